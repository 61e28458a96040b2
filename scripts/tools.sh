#!/usr/bin/env bash
# Builds the pinned code generators (tools/go.mod) into .bin/ and prints that
# directory. The first build of buf takes a few minutes; later ones are cached.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/.bin"
mkdir -p "$bin"
(cd "$top/tools" && GOBIN="$bin" go install tool)
echo "$bin"
