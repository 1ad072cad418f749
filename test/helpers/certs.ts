// Test certificates made with openssl (as scripts/make-feed-certs.sh makes them for a cluster):
// a CA, and leaf certificates with the CN, SANs and key usage a test needs.
import { execFileSync } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Ca {
  dir: string;
  name: string;
  crt: string;
  key: string;
}

export interface Leaf {
  crt: string;
  key: string;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function makeCa(dir: string, name: string): Ca {
  const crt = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-keyout',
    key,
    '-out',
    crt,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { dir, name, crt, key };
}

/** A leaf signed by `ca`: `sans` like ['DNS:fedmesh-syncer.test', 'URI:spiffe://fedmesh/agent']. */
export function makeLeaf(
  ca: Ca,
  file: string,
  cn: string,
  usage: 'serverAuth' | 'clientAuth',
  sans: string[] = [],
): Leaf {
  const crt = join(ca.dir, `${file}.crt`);
  const key = join(ca.dir, `${file}.key`);
  const csr = join(ca.dir, `${file}.csr`);
  const ext = join(ca.dir, `${file}.ext`);
  openssl([
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-subj',
    `/CN=${cn}`,
    '-keyout',
    key,
    '-out',
    csr,
  ]);
  writeFileSync(
    ext,
    `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=${usage}\n${sans.length ? `subjectAltName=${sans.join(',')}\n` : ''}`,
  );
  openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.crt,
    '-CAkey',
    ca.key,
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    ext,
    '-out',
    crt,
  ]);
  return { crt, key };
}

/** Puts a CA and a leaf where a running process reads them (each file replaced by a rename). */
export function install(
  ca: Ca,
  leaf: Leaf,
  files: { caFile: string; certFile: string; keyFile: string },
): void {
  for (const [from, to] of [
    [ca.crt, files.caFile],
    [leaf.crt, files.certFile],
    [leaf.key, files.keyFile],
  ] as const) {
    copyFileSync(from, `${to}.new`);
    execFileSync('mv', ['-f', `${to}.new`, to]);
  }
}
