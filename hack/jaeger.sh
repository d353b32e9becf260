#!/usr/bin/env bash
# Builds Jaeger v2 (the all-in-one built on the OpenTelemetry Collector) from
# its Go module into the cache directory (default
# $HOME/.cache/orchestrator-edge/jaeger-$VERSION) unless it is there already,
# and prints the binary's path. The tracing tests send the appliance's OTLP
# spans to it and read the traces back from its query API.
#
# `go install …/cmd/jaeger` refuses the module (its go.mod has a replace), so
# the module's source is downloaded, copied out of the module cache and built
# there, outside the product. Slow once (about 14 minutes on a busy 2-core
# machine), then cached.
set -euo pipefail

VERSION=${JAEGER_VERSION:-v1.75.0}
DIR=${JAEGER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orchestrator-edge/jaeger-$VERSION}
BIN="$DIR/jaeger"

if [ ! -x "$BIN" ]; then
	mkdir -p "$DIR"
	work=$(mktemp -d)
	trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
	echo "building jaeger $VERSION (about a quarter of an hour, once)..." >&2
	src=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/jaegertracing/jaeger@$VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [ -z "$src" ] || [ ! -d "$src" ]; then
		echo "could not download github.com/jaegertracing/jaeger@$VERSION" >&2
		exit 1
	fi
	cp -r "$src" "$work/jaeger"
	chmod -R u+w "$work/jaeger"
	(cd "$work/jaeger" && CGO_ENABLED=0 go build -trimpath -o "$BIN.tmp" ./cmd/jaeger)
	mv "$BIN.tmp" "$BIN"
fi
echo "$BIN"
