#!/usr/bin/env bash
# Builds kube-apiserver from the Go module k8s.io/kubernetes into the cache
# directory (default $HOME/.cache/orchestrator-edge/k8s) unless it is there
# already, and links Debian's etcd beside it, so that the folder can be used as
# KUBEBUILDER_ASSETS by controller-runtime's envtest. Prints the folder.
#
# k8s.io/kubernetes replaces its staging modules with local paths, so it cannot
# be `go install`ed; a throwaway module pins each staging module instead.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
STAGING_VERSION=v0.${K8S_VERSION#1.}
ASSETS=${KUBE_ASSETS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orchestrator-edge/k8s-$K8S_VERSION}
mkdir -p "$ASSETS"

if ! command -v etcd >/dev/null && [ ! -x /usr/bin/etcd ]; then
	echo "etcd not found: apt-get install etcd-server" >&2
	exit 1
fi
ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$ASSETS/etcd"

if [ ! -x "$ASSETS/kube-apiserver" ]; then
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	cd "$work"
	staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
	cloud-provider cluster-bootstrap code-generator component-base component-helpers
	controller-manager cri-api cri-client cri-streaming csi-translation-lib
	dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator
	kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
	mount-utils pod-security-admission sample-apiserver sample-cli-plugin
	sample-controller streaming"
	{
		echo "module kubeapiserverbuild"
		echo
		echo "go 1.26.0"
		echo
		echo "godebug default=go1.26"
		echo
		for m in $staging; do echo "replace k8s.io/$m => k8s.io/$m $STAGING_VERSION"; done
	} >go.mod
	echo "building kube-apiserver v$K8S_VERSION (a few minutes, once)..." >&2
	go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" >"$work/get.log" 2>&1 || {
		cat "$work/get.log" >&2
		exit 1
	}
	minor=${K8S_VERSION#1.}
	minor=${minor%%.*}
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w \
		-X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
		-X k8s.io/component-base/version.gitMajor=1 \
		-X k8s.io/component-base/version.gitMinor=$minor" \
		-o "$ASSETS/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
	mv "$ASSETS/kube-apiserver.tmp" "$ASSETS/kube-apiserver"
fi
echo "$ASSETS"
