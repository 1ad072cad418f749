#!/usr/bin/env bash
# Installs what fedmesh needs on a fresh Debian machine: the kernel tools (iproute2, iptables with
# both backends, ipset, ping) and etcd-server (etcdv3 tests, `demo --etcd`) from Debian, and the npm
# packages from the lockfile. Idempotent:
# it installs only what is missing. Needs root for apt-get (the demo and tests need root anyway).
set -euo pipefail
cd "$(dirname "$0")/.."

major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ]; then
  echo "fedmesh needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need ip iproute2
need bridge iproute2
need iptables-nft-restore iptables
need iptables-legacy-restore iptables
need ipset ipset
need nft nftables  # nft monitor: drift checks on the nft backend read only after another process changed a table
need ping iputils-ping
need sysctl procps
need openssl openssl  # feed TLS tests and scripts/make-feed-certs.sh
need etcd etcd-server
# Tests drive the Kubernetes API server double with a real kubectl.
need kubectl kubernetes-client
# GNU time (not the shell keyword): `npm run bench -- eval` reads each command's peak RSS from it.
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  echo "installing Debian packages: $pkgs"
  if [ "$(id -u)" -ne 0 ]; then echo "need root to install $pkgs" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi

# npm packages: from the committed lockfile, install scripts governed by allowScripts (.npmrc).
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

# The compiled program (bin/compiled.js): built now so the first command does not wait for it; the
# binary rebuilds it by itself whenever a source file changes.
node bin/fedmesh.js --help >/dev/null
