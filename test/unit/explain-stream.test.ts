// `fedmesh explain` streams a local file datastore into its merged view and keeps only the
// resources the flow's ends can be looked up in (cli/explain.ts lookedUp); the whole read, as
// other datastores are read, keeps them all. On random clusters (endpoints sharing names, pods and
// addresses across namespaces, host endpoints, a remote cluster whose host endpoint may be named
// like a local namespace) and random ends (names, pods, addresses, remote and unknown names),
// both give the same report, or refuse with the same words.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';

process.env.FEDMESH_LOG_LEVEL ??= 'silent';
const { explain, ExplainError } = await import('../../cli/explain.ts');

const ROOT = new URL('../..', import.meta.url).pathname;

const endpointArb = fc.record({
  namespace: fc.constantFrom('shop', 'db', 'b'),
  name: fc.constantFrom('n1', 'n2', 'n3'),
  pod: fc.constantFrom('p1', 'p2', 'n1'),
  ip: fc.constantFrom('10.9.0.1', '10.9.0.2', '10.9.0.3', '10.10.1.5'),
});

function endpointDoc(e: { namespace: string; name: string; pod: string; ip: string }, i: number): string {
  return `apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: ${e.name}, namespace: ${e.namespace}, labels: {app: a${i % 3}}}
spec:
  node: a-node1
  pod: ${e.pod}
  interfaceName: cali${String(i).padStart(11, '0')}
  ipNetworks: [${e.ip}/32]
`;
}

const HOST = `apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1, labels: {role: node}}
spec: {node: a-node1, interfaceName: eth0, expectedIPs: [10.9.0.2]}
`;

const endArb = fc.constantFrom(
  'shop/n1',
  'shop/p1',
  'shop/p2',
  'db/n2',
  'db/p2',
  'b/n1',
  'a/shop/n3',
  'a/db/p1',
  'shop/a--node1-k8s-frontend--1-eth0',
  'b/shop/b--node1-k8s-db--1-eth0',
  'b/shop/db-2',
  'b/nope',
  'c/shop/n1',
  'n1',
  'nope/n1',
  '10.9.0.1',
  '10.9.0.2',
  '10.9.0.3',
  '10.10.1.5',
  '10.20.1.5',
  '192.0.2.1',
);

test('explain streamed gives what explain over the whole read gives', async () => {
  const base = mkdtempSync(join(tmpdir(), 'fedmesh-explain-stream-'));
  try {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(endpointArb, { maxLength: 12 }),
        fc.boolean(),
        fc.boolean(),
        endArb,
        endArb,
        fc.constantFrom('80/tcp', '5432/tcp', '53/udp'),
        async (endpoints, host, remoteHost, from, to, port) => {
          const world = join(base, `w${run++}`);
          cpSync(join(ROOT, 'examples/two-cluster/a'), join(world, 'a'), { recursive: true });
          cpSync(join(ROOT, 'examples/two-cluster/b'), join(world, 'b'), { recursive: true });
          const docs = endpoints.map(endpointDoc);
          if (host) docs.push(HOST);
          writeFileSync(join(world, 'a', 'random.yaml'), docs.join('---\n'));
          // A host endpoint of b named as a local namespace may be: `b/n1` is then one or the other.
          if (remoteHost) writeFileSync(join(world, 'b', 'host.yaml'), HOST.replace('10.9.0.2', '10.20.9.9'));
          const opts = {
            cluster: 'a',
            datastore: `file:${join(world, 'a')}`,
            from,
            to,
            port,
            output: 'json',
          };
          const outcome = async (streamed: boolean) => {
            try {
              return JSON.stringify(await explain(opts, { streamed }));
            } catch (e) {
              if (e instanceof ExplainError) return `refused: ${e.message}`;
              throw e;
            }
          };
          assert.equal(await outcome(true), await outcome(false));
        },
      ),
      { numRuns: 60 },
    );
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
