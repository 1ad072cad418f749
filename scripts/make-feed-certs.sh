#!/usr/bin/env bash
# Makes a CA and the feed's certificates for a test cluster (openssl), and the Secrets the
# manifests mount (daemonset/syncer-deployment.yaml, daemonset/agent-daemonset.yaml):
#
#   scripts/make-feed-certs.sh OUTDIR [--namespace NS] [--days N] [--ca-dir DIR] [--apply]
#
# OUTDIR/ca.crt, ca.key            the feed's own CA (keep ca.key off the cluster)
# OUTDIR/syncer.crt, syncer.key    server certificate: CN fedmesh-syncer, DNS SANs of the Service
# OUTDIR/agent.crt, agent.key      client certificate: CN fedmesh-agent, URI SAN spiffe://fedmesh/agent
# OUTDIR/secrets.yaml              Secrets fedmesh-syncer-tls and fedmesh-agent-tls (ca.crt, tls.crt, tls.key)
#
# --ca-dir DIR reuses DIR/ca.crt and DIR/ca.key (rotation: new leaf certificates, same CA).
# --apply runs `kubectl apply -f OUTDIR/secrets.yaml`. The syncer and agents pick up rotated files
# without a restart (kubelet refreshes mounted Secrets within about a minute).
# For production use your own PKI (cert-manager, ...): only the names below matter:
#   syncer: --tls-client-cn must match the agents' CN or URI SAN;
#   agents: --tls-server-name must be a DNS SAN of the syncer's certificate.
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 1 ]] || usage
out=$1; shift
ns=fedmesh-system days=365 ca_dir='' apply=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --namespace) ns=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --ca-dir) ca_dir=$2; shift 2 ;;
    --apply) apply=1; shift ;;
    *) usage ;;
  esac
done
command -v openssl >/dev/null || { echo "make-feed-certs: openssl is not installed" >&2; exit 1; }
mkdir -p "$out"
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [[ -n $ca_dir ]]; then
  cp "$ca_dir/ca.crt" "$ca_dir/ca.key" "$out/" 2>/dev/null || [[ $ca_dir -ef $out ]]
else
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
    -subj "/CN=fedmesh-feed-ca" -keyout "$out/ca.key" -out "$out/ca.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
fi

# leaf NAME CN EXTENDED_KEY_USAGE SUBJECT_ALT_NAMES
leaf() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
    -keyout "$out/$1.key" -out "$tmp/$1.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$3" "$4" >"$tmp/$1.ext"
  openssl x509 -req -in "$tmp/$1.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -CAserial "$tmp/ca.srl" -days "$days" -extfile "$tmp/$1.ext" -out "$out/$1.crt" 2>/dev/null
}
leaf syncer fedmesh-syncer serverAuth \
  "DNS:fedmesh-syncer,DNS:fedmesh-syncer.$ns,DNS:fedmesh-syncer.$ns.svc,DNS:fedmesh-syncer.$ns.svc.cluster.local"
leaf agent fedmesh-agent clientAuth "URI:spiffe://fedmesh/agent"
chmod 600 "$out"/*.key
chmod 644 "$out"/*.crt

b64() { base64 -w0 <"$1"; }
secret() { # NAME CERT KEY
  cat <<EOF
---
apiVersion: v1
kind: Secret
metadata:
  name: $1
  namespace: $ns
  labels:
    app.kubernetes.io/part-of: fedmesh
type: kubernetes.io/tls
data:
  ca.crt: $(b64 "$out/ca.crt")
  tls.crt: $(b64 "$2")
  tls.key: $(b64 "$3")
EOF
}
{
  secret fedmesh-syncer-tls "$out/syncer.crt" "$out/syncer.key"
  secret fedmesh-agent-tls "$out/agent.crt" "$out/agent.key"
} >"$out/secrets.yaml"

echo "make-feed-certs: CA, syncer and agent certificates and secrets.yaml in $out" >&2
if [[ $apply == 1 ]]; then kubectl apply -f "$out/secrets.yaml"; fi
