package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/incidentfox/orchestrator-edge/hack/tools/internal/devserve"
)

// The Makefile sets these: IMAGE_ARCHIVE names the archive `make image`
// built; IMAGE_REQUIRE_QEMU=1 makes a missing qemu-user-static a failure
// instead of a skip.
const (
	archiveEnv     = "IMAGE_ARCHIVE"
	requireQEMUEnv = "IMAGE_REQUIRE_QEMU"
)

// platforms are the ones every release image carries.
var platforms = []string{"linux/amd64", "linux/arm64"}

// elfMachine is the ELF machine each architecture's binary must be built for.
var elfMachine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// unpack extracts an OCI archive into a directory and opens its layout.
func unpack(t *testing.T, archive string) layout.Path {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(path, dir+string(filepath.Separator)) {
			t.Fatalf("archive entry %q escapes the directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected entry %q of type %c", h.Name, h.Typeflag)
		}
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	return lp
}

// platformImages opens the archive's one tagged index and returns its images
// by "os/arch", with the reference the archive names.
func platformImages(t *testing.T, archive string) (map[string]v1.Image, string) {
	t.Helper()
	top, err := unpack(t, archive).ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index.json lists %d entries, want the one image index", len(im.Manifests))
	}
	d := im.Manifests[0]
	ref := d.Annotations["io.containerd.image.name"]
	if d.Annotations["org.opencontainers.image.ref.name"] == "" || ref == "" {
		t.Fatalf("index.json entry has no names for importers: %v", d.Annotations)
	}
	idx, err := top.ImageIndex(d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := idx.MediaType(); mt != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("media type %s, want an OCI image index", mt)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Image{}
	for _, d := range m.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		out[d.Platform.OS+"/"+d.Platform.Architecture] = img
	}
	return out, ref
}

// contents checks one platform's image and returns its binary.
func contents(t *testing.T, plat string, img v1.Image) (binary []byte, compressed int64) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/orchestrator"}) || !slices.Equal(c.Cmd, []string{"serve"}) ||
		cf.OS+"/"+cf.Architecture != plat {
		t.Fatalf("%s config: user %q entrypoint %v cmd %v platform %s/%s", plat, c.User, c.Entrypoint, c.Cmd, cf.OS, cf.Architecture)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, l := range layers {
		n, _ := l.Size()
		compressed += n
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag != tar.TypeReg {
				continue
			}
			files = append(files, h.Name)
			if h.Name == "orchestrator" {
				if h.Mode&0o111 == 0 {
					t.Errorf("%s: the binary is not executable", plat)
				}
				if binary, err = io.ReadAll(tr); err != nil {
					t.Fatal(err)
				}
			}
		}
		rc.Close()
	}
	slices.Sort(files)
	want := []string{"etc/group", "etc/passwd", "etc/ssl/certs/ca-certificates.crt", "orchestrator"}
	if !slices.Equal(files, want) {
		t.Fatalf("%s: files in the image = %v, want %v", plat, files, want)
	}
	return binary, compressed
}

// TestImage_BuildsAnIndexOfEveryPlatform builds an archive from stand-in
// binaries, so the layout is checked even without `make image`.
func TestImage_BuildsAnIndexOfEveryPlatform(t *testing.T) {
	dir := t.TempDir()
	var bins binaries
	for _, p := range platforms {
		path := filepath.Join(dir, strings.ReplaceAll(p, "/", "-"))
		if err := os.WriteFile(path, []byte("#!stand-in binary for "+p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := bins.Set(p + "=" + path); err != nil {
			t.Fatal(err)
		}
	}
	certs := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(certs, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image.oci.tar")
	if err := build(bins, certs, out, "registry.internal:5000/incidentfox/orchestrator-edge:test", "test"); err != nil {
		t.Fatal(err)
	}
	imgs, ref := platformImages(t, out)
	if ref != "registry.internal:5000/incidentfox/orchestrator-edge:test" {
		t.Errorf("reference %q", ref)
	}
	for _, p := range platforms {
		img, ok := imgs[p]
		if !ok {
			t.Fatalf("no %s image in %v", p, imgs)
		}
		if bin, _ := contents(t, p, img); string(bin) != "#!stand-in binary for "+p {
			t.Errorf("%s carries %q", p, bin)
		}
	}
	// The same inputs give the same bytes.
	again := filepath.Join(dir, "again.oci.tar")
	if err := build(bins, certs, again, "registry.internal:5000/incidentfox/orchestrator-edge:test", "test"); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Error("two builds of the same inputs differ")
	}
}

// TestImage_EveryPlatformsBinaryRuns opens the archive `make image` built
// and, for each platform, checks the image and runs its binary: natively on
// the host's architecture, under qemu-user-static on the other. The binary
// must print its version and serve `/ready` in dev mode (SQLite included).
func TestImage_EveryPlatformsBinaryRuns(t *testing.T) {
	archive := os.Getenv(archiveEnv)
	if archive == "" {
		t.Skipf("%s not set (make image builds the archive and sets it in make test)", archiveEnv)
	}
	imgs, _ := platformImages(t, archive)
	if len(imgs) != len(platforms) {
		t.Fatalf("archive holds %d platforms, want %v", len(imgs), platforms)
	}
	for _, p := range platforms {
		t.Run(strings.ReplaceAll(p, "/", "-"), func(t *testing.T) {
			img, ok := imgs[p]
			if !ok {
				t.Fatalf("no %s image", p)
			}
			bin, size := contents(t, p, img)
			arch := strings.TrimPrefix(p, "linux/")
			ef, err := elf.NewFile(bytes.NewReader(bin))
			if err != nil {
				t.Fatalf("%s binary is not ELF: %v", p, err)
			}
			if ef.Machine != elfMachine[arch] {
				t.Fatalf("%s binary is built for %v", p, ef.Machine)
			}
			for _, prog := range ef.Progs {
				if prog.Type == elf.PT_INTERP {
					t.Fatalf("%s binary is dynamically linked", p)
				}
			}
			t.Logf("%s: %.1f MB compressed, binary %.1f MB", p, float64(size)/1e6, float64(len(bin))/1e6)

			path := filepath.Join(t.TempDir(), "orchestrator")
			if err := os.WriteFile(path, bin, 0o755); err != nil {
				t.Fatal(err)
			}
			var prefix []string
			if arch != runtime.GOARCH {
				emu := map[string]string{"arm64": "qemu-aarch64-static", "amd64": "qemu-x86_64-static"}[arch]
				q, err := exec.LookPath(emu)
				if err != nil {
					if os.Getenv(requireQEMUEnv) == "1" {
						t.Fatalf("%s needed to run the %s binary (Debian package qemu-user-static): %v", emu, p, err)
					}
					t.Skipf("%s not installed: %v", emu, err)
				}
				prefix = []string{q}
			}
			run(t, p, append(prefix, path))
		})
	}
}

// run executes `version` and a dev-mode `serve` of the binary (argv0 may be
// an emulator followed by the binary) and asks the server for /ready.
func run(t *testing.T, plat string, argv0 []string) {
	t.Helper()
	out, err := exec.Command(argv0[0], append(argv0[1:], "version")...).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "orchestrator ") || !strings.Contains(string(out), plat) {
		t.Fatalf("%s: version = %q, %v", plat, out, err)
	}
	t.Logf("%s: %s", plat, strings.TrimSpace(string(out)))

	srv := devserve.Start(t, argv0...)
	resp, err := http.Get(srv.URL + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: /ready = %d %s", plat, resp.StatusCode, body)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("%s: serve after SIGTERM: %v\n%s", plat, err, srv.Logs())
	}
	t.Logf("%s: serve --dev answered /ready 200 and stopped on SIGTERM", plat)
}
