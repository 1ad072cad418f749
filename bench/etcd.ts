// etcdv3 datastore benchmark: a real etcd (Debian's etcd-server) holding a remote cluster of N
// workload endpoints (default 10,000) in Calico's layout, 50 namespaces (kns. Profiles), 100
// nodes with their blocks. Measured side by side, median of R runs:
//   - floor: reading every key of the two watched prefixes with bare paged range requests;
//   - driver: EtcdDatastore from start() to InSync (list at one revision, decode and validate
//     every value, watch established);
//   - syncer: runSyncer for a local cluster with an RCC `datastoreType: etcdv3`, from the call to
//     an agent's FeedClient holding InSync and all N remote endpoints.
//
//   npm run bench -- etcd [endpoints=10000] [runs=3]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Range } from 'etcd3';
import { type RemoteClusterStatus, ResourceKind, type Update } from '../proto/service.ts';
import { hasEtcd, TestEtcd } from '../test/harness/etcd.ts';

process.env.FEDMESH_LOG_LEVEL ??= 'warn';
const { EtcdDatastore, etcdClient } = await import('../syncer/datastore/etcd.ts');
const { putAll } = await import('../syncer/datastore/etcd-load.ts');
const { blockKey, resourceKey, WATCHED_PREFIXES } = await import('../syncer/datastore/etcd-layout.ts');
const { runSyncer } = await import('../syncer/main.ts');
const { FeedClient } = await import('../agent/feed/client.ts');

const TARGET_SYNCER_MS = 5000;
const NAMESPACES = 50;
const NODES = 100;

const endpoints = Number(process.argv[2] ?? 10_000);
const runs = Number(process.argv[3] ?? 3);

function clusterKvs(n: number): Map<string, string> {
  const kvs = new Map<string, string>();
  const v3 = (kind: string, metadata: object, spec: object) =>
    JSON.stringify({ apiVersion: 'projectcalico.org/v3', kind, metadata, spec });
  kvs.set(
    resourceKey('IPPool', 'b-pool') as string,
    v3('IPPool', { name: 'b-pool' }, { cidr: '10.32.0.0/12', vxlanMode: 'Always', blockSize: 26 }),
  );
  for (let i = 0; i < NAMESPACES; i++) {
    const ns = `ns-${i}`;
    kvs.set(
      resourceKey('Profile', `kns.${ns}`) as string,
      v3(
        'Profile',
        { name: `kns.${ns}` },
        { labelsToApply: { 'pcns.projectcalico.org/name': ns, 'pcns.team': `t${i % 7}` } },
      ),
    );
  }
  for (let i = 0; i < NODES; i++) {
    const name = `b-node${i}`;
    kvs.set(
      resourceKey('Node', name) as string,
      v3('Node', { name }, { bgp: { ipv4Address: `192.168.${100 + (i >> 8)}.${i & 255}/16` } }),
    );
  }
  for (let i = 0; i < n; i++) {
    const node = i % NODES;
    const ns = `ns-${i % NAMESPACES}`;
    const ip = `10.${32 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    const name = `b--node${node}-k8s-pod--${i}-eth0`;
    kvs.set(
      resourceKey('WorkloadEndpoint', name, ns) as string,
      v3(
        'WorkloadEndpoint',
        {
          name,
          namespace: ns,
          labels: {
            app: `app-${i % 300}`,
            'projectcalico.org/namespace': ns,
            'projectcalico.org/orchestrator': 'k8s',
          },
        },
        {
          orchestrator: 'k8s',
          node: `b-node${node}`,
          pod: `pod-${i}`,
          endpoint: 'eth0',
          interfaceName: `cali${String(i).padStart(11, '0')}`,
          ipNetworks: [`${ip}/32`],
          profiles: [`kns.${ns}`, `ksa.${ns}.default`],
        },
      ),
    );
  }
  for (let b = 0; b * 64 < n; b++) {
    const i = b * 64;
    const cidr = `10.${32 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/26`;
    kvs.set(blockKey(cidr), JSON.stringify({ cidr, affinity: `host:b-node${b % NODES}`, deleted: false }));
  }
  return kvs;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

async function main(): Promise<void> {
  if (!hasEtcd())
    throw new Error('etcd is not installed (Debian package etcd-server; scripts/setup.sh installs it)');
  const cleanups: (() => unknown)[] = [];
  const scope = { after: (fn: () => unknown) => void cleanups.push(fn) };
  try {
    const etcd = await TestEtcd.start(scope);
    const conn = { type: 'etcdv3' as const, endpoints: [etcd.endpoint] };
    const writer = etcdClient(conn);
    cleanups.push(() => writer.close());
    const kvs = clusterKvs(endpoints);
    const t0 = performance.now();
    await putAll(writer, kvs);
    process.stdout.write(
      `etcd ${etcd.endpoint}: ${kvs.size} keys written (${endpoints} endpoints) in ${Math.round(performance.now() - t0)} ms\n`,
    );

    const dir = mkdtempSync(join(tmpdir(), 'fedmesh-bench-etcd-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(
      join(dir, 'rcc.yaml'),
      `apiVersion: projectcalico.org/v3\nkind: RemoteClusterConfiguration\nmetadata: {name: b}\nspec: {datastoreType: etcdv3, etcdEndpoints: "${etcd.endpoint}", syncOptions: {overlayRoutingMode: Enabled}}\n`,
    );

    const floor: number[] = [];
    const driver: number[] = [];
    const syncer: number[] = [];
    for (let r = 0; r < runs; r++) {
      // Floor: the same keys with bare paged range requests.
      let start = performance.now();
      let keys = 0;
      for (const prefix of WATCHED_PREFIXES) {
        const end = Range.prefix(prefix).end;
        let from = Buffer.from(prefix);
        for (;;) {
          const res = await writer.getAll().inRange({ start: from, end }).limit(1000).exec();
          keys += res.kvs.length;
          const last = res.kvs.at(-1);
          if (!res.more || !last) break;
          from = Buffer.concat([last.key, Buffer.from([0])]);
        }
      }
      floor.push(performance.now() - start);
      if (keys !== kvs.size) throw new Error(`floor read ${keys} keys, expected ${kvs.size}`);

      // The driver alone.
      start = performance.now();
      const ds = new EtcdDatastore(conn);
      let count = 0;
      await new Promise<void>((resolve, reject) => {
        void ds.start({
          onEvents: (evs) => {
            count += evs.length;
          },
          onStatus: (s, detail) => {
            if (s === 'InSync') resolve();
            if (s === 'ConnectionFailed') reject(new Error(detail));
          },
        });
      });
      driver.push(performance.now() - start);
      await ds.stop();
      if (count < endpoints) throw new Error(`driver emitted ${count} resources`);

      // The whole syncer, as an agent sees it.
      const socket = join(dir, `feed-${r}.sock`);
      start = performance.now();
      const stop = await runSyncer({
        cluster: 'a',
        datastore: `file:${dir}`,
        listen: `unix:${socket}`,
        remoteSyncTimeoutMs: 120_000,
      });
      let remote = 0;
      let inSync = false;
      let stopClient: () => unknown = () => undefined;
      const done = new Promise<void>((resolve) => {
        const check = () => {
          if (inSync && remote >= endpoints) resolve();
        };
        const client = new FeedClient(
          { target: `unix:${socket}`, nodeName: 'a-node1', version: 'bench' },
          {
            onHello: () => {},
            onUpdates: (us: Update[]) => {
              for (const u of us)
                if (u.kind === ResourceKind.WORKLOAD_ENDPOINT && u.cluster === 'b')
                  remote += u.deleted ? -1 : 1;
              check();
            },
            onInSync: () => {
              inSync = true;
              check();
            },
            onRemoteStatus: (_s: RemoteClusterStatus) => {},
          },
        );
        client.start();
        stopClient = () => client.stop();
      });
      await done;
      syncer.push(performance.now() - start);
      await stopClient();
      await stop();
    }
    const f = median(floor);
    const d = median(driver);
    const s = median(syncer);
    process.stdout.write(
      [
        `remote cluster in etcd: ${endpoints} endpoints, ${kvs.size} keys; medians of ${runs} runs`,
        `  floor (bare paged range read of the watched prefixes): ${f.toFixed(0)} ms`,
        `  driver start → InSync (list, decode, validate, watch): ${d.toFixed(0)} ms (ratio to floor ${(d / f).toFixed(1)})`,
        `  syncer start → agent in sync with all ${endpoints} remote endpoints: ${s.toFixed(0)} ms; target ${TARGET_SYNCER_MS} ms, ratio ${(s / TARGET_SYNCER_MS).toFixed(2)} (${(s / f).toFixed(1)}× the floor)`,
        '',
      ].join('\n'),
    );
  } finally {
    for (let fn = cleanups.pop(); fn; fn = cleanups.pop()) await fn();
  }
}

await main();
process.exit(0);
