#!/usr/bin/env bash
# Regenerates gen/ from proto/ with the pinned generators, then lints the
# protos. Run it after changing anything under proto/.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$("$top/scripts/tools.sh")
cd "$top"
PATH="$bin:$PATH" buf lint
PATH="$bin:$PATH" buf generate
