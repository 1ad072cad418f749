#!/usr/bin/env bash
# The README's second command: install what is missing, check types and lint, run every test
# (unit, kernel integration in network namespaces, end-to-end demo on both iptables backends).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx tsc --noEmit -p .
npx biome check .
exec node scripts/run-tests.mjs "$@"
