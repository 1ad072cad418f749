#!/usr/bin/env bash
# The README's first command: install what is missing, then run the two-cluster demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node bin/fedmesh.js demo "$@"
