#!/usr/bin/env bash
# Builds Prometheus Alertmanager from its Go module into the cache directory
# (default $HOME/.cache/orchestrator-edge/alertmanager-$VERSION) unless it is
# there already, and prints the binary's path. The Alertmanager source's tests
# run it for real.
#
# `go install …/cmd/alertmanager` fails: ui/web.go embeds app/dist, which the
# module does not ship. So the module's source is copied out of the module
# cache, given a placeholder ui/app/dist, and built there, outside the product.
set -euo pipefail

VERSION=${ALERTMANAGER_VERSION:-v0.35.0}
DIR=${ALERTMANAGER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orchestrator-edge/alertmanager-$VERSION}
BIN="$DIR/alertmanager"

if [ ! -x "$BIN" ]; then
	mkdir -p "$DIR"
	work=$(mktemp -d)
	trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
	echo "building alertmanager $VERSION (a minute or two, once)..." >&2
	src=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/prometheus/alertmanager@$VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [ -z "$src" ] || [ ! -d "$src" ]; then
		echo "could not download github.com/prometheus/alertmanager@$VERSION" >&2
		exit 1
	fi
	cp -r "$src" "$work/am"
	chmod -R u+w "$work/am"
	mkdir -p "$work/am/ui/app/dist"
	echo '<!doctype html><title>Alertmanager</title>' >"$work/am/ui/app/dist/index.html"
	(cd "$work/am" && CGO_ENABLED=0 go build -trimpath -o "$BIN.tmp" ./cmd/alertmanager)
	mv "$BIN.tmp" "$BIN"
fi
echo "$BIN"
