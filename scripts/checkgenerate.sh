#!/usr/bin/env bash
# Fails when the committed generated code under gen/ differs from what
# proto/ generates now (stale or hand-edited generated code).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
"$top/scripts/generate.sh"
if [ -n "$(git status --porcelain -- gen proto)" ]; then
  echo "checkgenerate: generated code is stale; run scripts/generate.sh and commit:" >&2
  git status --porcelain -- gen proto >&2
  git diff --stat -- gen >&2
  exit 1
fi
echo "checkgenerate: gen/ is up to date"
