package main

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestImage checks the tarball the build writes: non-root, `serve`, and
// layers that hold the binary, the CA bundle and the user files — nothing
// else. IMAGE_TARBALL names a tarball `make image` built; without it the
// test builds one from a stand-in binary.
func TestImage(t *testing.T) {
	path := os.Getenv("IMAGE_TARBALL")
	if path == "" {
		dir := t.TempDir()
		bin := filepath.Join(dir, "orchestrator")
		if err := os.WriteFile(bin, []byte("#!stand-in binary"), 0o755); err != nil {
			t.Fatal(err)
		}
		certs := filepath.Join(dir, "ca.crt")
		if err := os.WriteFile(certs, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		path = filepath.Join(dir, "image.tar")
		if err := build(bin, certs, path, "incidentfox/orchestrator-edge:test", "test"); err != nil {
			t.Fatal(err)
		}
	}
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/orchestrator"}) || !slices.Equal(c.Cmd, []string{"serve"}) || cf.OS != "linux" {
		t.Fatalf("config: user %q entrypoint %v cmd %v os %s", c.User, c.Entrypoint, c.Cmd, cf.OS)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	var size int64
	for _, l := range layers {
		n, _ := l.Size()
		size += n
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
			if h.Typeflag == tar.TypeReg {
				files = append(files, h.Name)
				if h.Name == "orchestrator" && h.Mode&0o111 == 0 {
					t.Error("the binary is not executable")
				}
			}
		}
		rc.Close()
	}
	slices.Sort(files)
	want := []string{"etc/group", "etc/passwd", "etc/ssl/certs/ca-certificates.crt", "orchestrator"}
	if !slices.Equal(files, want) {
		t.Fatalf("files in the image = %v, want %v", files, want)
	}
	t.Logf("%s: %d layers, %.1f MB compressed", path, len(layers), float64(size)/1e6)
}
