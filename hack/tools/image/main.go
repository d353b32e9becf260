// Command image builds the orchestrator's multi-platform OCI image without a
// Docker daemon. Each platform's image has a layer with CA certificates and a
// non-root user and a layer with that platform's static binary, and a config
// that runs `/orchestrator serve` as uid 65532. The images go into one OCI
// image index, written as an OCI image layout in a tarball (an "OCI
// archive"), which `skopeo copy --all oci-archive:`, `crane push`, `ctr
// images import` and Docker 25+'s `docker load` accept.
//
//	image --binary linux/amd64=bin/linux-amd64/orchestrator \
//	      --binary linux/arm64=bin/linux-arm64/orchestrator \
//	      --out dist/orchestrator-edge-image-0.4.0.oci.tar --tag incidentfox/orchestrator-edge:0.4.0
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// binaries is the repeated --binary os/arch=path flag.
type binaries []platformBinary

type platformBinary struct {
	platform v1.Platform
	path     string
}

func (b *binaries) String() string { return fmt.Sprint(*b) }

func (b *binaries) Set(s string) error {
	plat, path, ok := strings.Cut(s, "=")
	os, arch, ok2 := strings.Cut(plat, "/")
	if !ok || !ok2 || os == "" || arch == "" || path == "" {
		return fmt.Errorf("want os/arch=path, got %q", s)
	}
	*b = append(*b, platformBinary{platform: v1.Platform{OS: os, Architecture: arch}, path: path})
	return nil
}

func main() {
	var bins binaries
	flag.Var(&bins, "binary", "os/arch=path of a static orchestrator binary (repeat per platform)")
	certs := flag.String("certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to ship")
	out := flag.String("out", "dist/orchestrator-edge-image.oci.tar", "OCI archive to write")
	tag := flag.String("tag", "incidentfox/orchestrator-edge:dev", "image reference recorded in the archive")
	version := flag.String("version", "dev", "version label")
	flag.Parse()
	if len(bins) == 0 {
		fmt.Fprintln(os.Stderr, "image: at least one --binary os/arch=path")
		os.Exit(2)
	}
	if err := build(bins, *certs, *out, *tag, *version); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// epoch keeps the image reproducible: every file and the config carry it.
var epoch = time.Unix(0, 0).UTC()

type file struct {
	name string
	mode int64
	uid  int
	data []byte
	dir  bool
}

func layer(files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.uid, ModTime: epoch, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// baseLayer is the same on every platform: users, CA bundle, /data, /tmp.
func baseLayer(certs []byte) (v1.Layer, error) {
	return layer([]file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte("nonroot:x:65532:65532:nonroot:/data:/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, data: []byte("nonroot:x:65532:\n")},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: certs},
		{name: "data/", mode: 0o700, uid: 65532, dir: true},
		{name: "tmp/", mode: 0o1777, dir: true},
	})
}

// platformImage is one platform's image: the base layer plus its binary.
func platformImage(base v1.Layer, p platformBinary, version string) (v1.Image, error) {
	bin, err := os.ReadFile(p.path)
	if err != nil {
		return nil, err
	}
	app, err := layer([]file{{name: "orchestrator", mode: 0o755, data: bin}})
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, base, app)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	return mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: p.platform.Architecture,
		OS:           p.platform.OS,
		Created:      v1.Time{Time: epoch},
		Config: v1.Config{
			User:         "65532:65532",
			Entrypoint:   []string{"/orchestrator"},
			Cmd:          []string{"serve"},
			WorkingDir:   "/data",
			Env:          []string{"ORCHESTRATOR_DATA_DIR=/data", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
			ExposedPorts: map[string]struct{}{"8070/tcp": {}},
			Labels: map[string]string{
				"org.opencontainers.image.title":   "orchestrator-edge",
				"org.opencontainers.image.version": version,
			},
		},
		RootFS: cf.RootFS,
	})
}

func build(bins binaries, certsPath, out, tag, version string) error {
	certs, err := os.ReadFile(certsPath)
	if err != nil {
		return fmt.Errorf("%w (install ca-certificates)", err)
	}
	ref, err := name.ParseReference(tag)
	if err != nil {
		return err
	}
	base, err := baseLayer(certs)
	if err != nil {
		return err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range bins {
		img, err := platformImage(base, p, version)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", p.platform.OS, p.platform.Architecture, err)
		}
		plat := p.platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &plat}})
	}

	dir, err := os.MkdirTemp("", "oci-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	// The names importers look for: the OCI tag (skopeo, crane) and the full
	// reference (containerd's `ctr import`, Docker's `docker load`).
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref.Identifier(),
		"io.containerd.image.name":          ref.Name(),
	})); err != nil {
		return err
	}
	return tarDir(dir, out)
}

// tarDir writes dir as a tarball with sorted names and fixed times, so the
// same inputs give the same bytes.
func tarDir(dir, out string) error {
	var names []string
	if err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		names = append(names, path)
		return nil
	}); err != nil {
		return err
	}
	sort.Strings(names)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, path := range names {
		rel, _ := filepath.Rel(dir, path)
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: epoch, Format: tar.FormatPAX}
		if st.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		h.Typeflag, h.Size = tar.TypeReg, st.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, src)
		src.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
