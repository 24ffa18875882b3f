#!/usr/bin/env bash
# ghz, the gRPC load generator bench/bench_nodes.py drives (issue 13), built from the Go module
# proxy with the machine's Go toolchain into native/target/tools/bin (ignored, like the Rust
# builds). Idempotent: nothing is done when the pinned version is already there.
set -euo pipefail
VERSION="${GHZ_VERSION:-v0.120.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/native/target/tools/bin"
# a go-install build says "dev" to --version: the version built is kept beside it
if [ -x "$BIN/ghz" ] && [ "$(cat "$BIN/ghz.version" 2>/dev/null)" = "$VERSION" ]; then
    echo "ghz ${VERSION} already in $BIN"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "install-ghz: no 'go' on PATH (Go 1.21 or later is needed to build ghz)" >&2
    exit 1
fi
mkdir -p "$BIN"
# one package at a time and at low priority: the machine is small and shared
GOBIN="$BIN" GOFLAGS="${GOFLAGS:--p=1}" nice -n 10 go install "github.com/bojand/ghz/cmd/ghz@${VERSION}"
echo "$VERSION" > "$BIN/ghz.version"
echo "ghz ${VERSION} built into $BIN"
