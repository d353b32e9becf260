package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// bundleEnv names the archive `make bundle` built.
const bundleEnv = "BUNDLE"

// TestBundle_ChecksumsImageAndSBOMs opens the air-gap bundle as a customer
// would: every file's checksum matches SHA256SUMS and every file is listed;
// the image index carries both platforms; and each platform's SBOM lists
// exactly the Go modules (path and version) linked into that platform's
// binary as shipped in the image, read from the binary's own build info.
func TestBundle_ChecksumsImageAndSBOMs(t *testing.T) {
	bundle := os.Getenv(bundleEnv)
	if bundle == "" {
		t.Skipf("%s not set (make bundle builds it and sets it in make test)", bundleEnv)
	}
	files := untarGz(t, bundle)

	sums, ok := files["SHA256SUMS"]
	if !ok {
		t.Fatal("no SHA256SUMS in the bundle")
	}
	listed := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", sc.Text())
		}
		b, ok := files[name]
		if !ok {
			t.Fatalf("SHA256SUMS lists %s, which the bundle lacks", name)
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: checksum does not match SHA256SUMS", name)
		}
		listed[name] = true
	}
	var image string
	sboms := map[string][]byte{}
	for name, b := range files {
		if name != "SHA256SUMS" && !listed[name] {
			t.Errorf("%s is not in SHA256SUMS", name)
		}
		switch {
		case strings.HasSuffix(name, ".oci.tar"):
			image = name
		case strings.HasSuffix(name, ".cdx.json"):
			arch := strings.TrimSuffix(name[strings.LastIndex(name, "-linux-")+len("-linux-"):], ".cdx.json")
			sboms["linux/"+arch] = b
		}
	}
	for _, want := range []string{"AIRGAP.md", "values-private-registry.yaml"} {
		if _, ok := files[want]; !ok {
			t.Errorf("no %s in the bundle", want)
		}
	}
	if image == "" {
		t.Fatalf("no OCI image archive in the bundle: %v", slices.Sorted(maps.Keys(files)))
	}
	if strings.Contains(string(files["AIRGAP.md"]), "VERSION") {
		t.Error("AIRGAP.md still says VERSION: the bundle did not fill in its version")
	}

	path := filepath.Join(t.TempDir(), image)
	if err := os.WriteFile(path, files[image], 0o644); err != nil {
		t.Fatal(err)
	}
	imgs, _ := platformImages(t, path)
	for _, p := range platforms {
		img, ok := imgs[p]
		if !ok {
			t.Fatalf("no %s image in the bundle", p)
		}
		sbom, ok := sboms[p]
		if !ok {
			t.Fatalf("no SBOM for %s in the bundle", p)
		}
		bin, _ := contents(t, p, img)
		bi, err := buildinfo.Read(bytes.NewReader(bin))
		if err != nil {
			t.Fatal(err)
		}
		var linked []string
		for _, d := range bi.Deps {
			m := d
			if d.Replace != nil {
				m = d.Replace
			}
			linked = append(linked, m.Path+"@"+m.Version)
		}
		listed, licensed := sbomModules(t, p, sbom)
		slices.Sort(linked)
		if !slices.Equal(listed, linked) {
			t.Errorf("%s: the SBOM lists %d modules, the binary links %d\nSBOM only: %v\nbinary only: %v",
				p, len(listed), len(linked), minus(listed, linked), minus(linked, listed))
		}
		t.Logf("%s: SBOM lists the %d linked modules, %d with a detected license", p, len(listed), licensed)
	}
}

// sbomModules reads a CycloneDX JSON SBOM: its components as path@version
// (sorted), and how many carry a license.
func sbomModules(t *testing.T, plat string, b []byte) ([]string, int) {
	t.Helper()
	var doc struct {
		BOMFormat   string `json:"bomFormat"`
		SpecVersion string `json:"specVersion"`
		Components  []struct {
			Name     string `json:"name"`
			Version  string `json:"version"`
			PURL     string `json:"purl"`
			Hashes   []struct{ Alg, Content string }
			Licenses []json.RawMessage `json:"licenses"`
			Evidence *struct {
				Licenses []json.RawMessage `json:"licenses"`
			} `json:"evidence"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s SBOM: %v", plat, err)
	}
	if doc.BOMFormat != "CycloneDX" || doc.SpecVersion == "" {
		t.Fatalf("%s SBOM: format %q spec %q", plat, doc.BOMFormat, doc.SpecVersion)
	}
	var out []string
	licensed := 0
	goarch := "goarch=" + strings.TrimPrefix(plat, "linux/")
	for _, c := range doc.Components {
		if !strings.Contains(c.PURL, goarch) {
			t.Errorf("%s SBOM: %s is described for another platform (%s)", plat, c.Name, c.PURL)
		}
		if len(c.Hashes) == 0 {
			t.Errorf("%s SBOM: %s has no hash", plat, c.Name)
		}
		if len(c.Licenses) > 0 || c.Evidence != nil && len(c.Evidence.Licenses) > 0 {
			licensed++
		}
		out = append(out, c.Name+"@"+c.Version)
	}
	slices.Sort(out)
	return out, licensed
}

func untarGz(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(h.Name, "./")] = b
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
