// Command image builds the orchestrator's OCI image without a Docker daemon:
// a layer with CA certificates and a non-root user, a layer with the static
// binary, and a config that runs `/orchestrator serve` as uid 65532. It
// writes a docker-archive tarball that `docker load`, `ctr import` and
// `skopeo copy docker-archive:` accept.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	binary := flag.String("binary", "bin/orchestrator", "the static orchestrator binary")
	certs := flag.String("certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to ship")
	out := flag.String("out", "dist/orchestrator-edge-image.tar", "tarball to write")
	tag := flag.String("tag", "incidentfox/orchestrator-edge:dev", "image reference recorded in the tarball")
	version := flag.String("version", "dev", "version label")
	flag.Parse()
	if err := build(*binary, *certs, *out, *tag, *version); err != nil {
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
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

func build(binaryPath, certsPath, out, tag, version string) error {
	bin, err := os.ReadFile(binaryPath)
	if err != nil {
		return err
	}
	certs, err := os.ReadFile(certsPath)
	if err != nil {
		return fmt.Errorf("%w (install ca-certificates)", err)
	}
	base, err := layer([]file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte("nonroot:x:65532:65532:nonroot:/data:/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, data: []byte("nonroot:x:65532:\n")},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: certs},
		{name: "data/", mode: 0o700, uid: 65532, dir: true},
		{name: "tmp/", mode: 0o1777, dir: true},
	})
	if err != nil {
		return err
	}
	app, err := layer([]file{{name: "orchestrator", mode: 0o755, data: bin}})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, base, app)
	if err != nil {
		return err
	}
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
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
		RootFS: mustRootFS(img),
	})
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(tag)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, ref, img)
}

func mustRootFS(img v1.Image) v1.RootFS {
	cf, err := img.ConfigFile()
	if err != nil {
		panic(err)
	}
	return cf.RootFS
}
