// What the two-cluster example must do: each row a flow, what policy says should happen, and why.
// These expectations are written from the policies in examples/two-cluster, not from observation.

export type Expect = 'allow' | 'deny';

export interface Flow {
  /** `<cluster>/<pod>` or `<cluster>/<node>` (a node's own host namespace). */
  from: string;
  to: string;
  proto: 'tcp' | 'icmp';
  port?: number;
  expect: Expect;
  /** For allowed TCP flows: the source address the server must see ('pod': the client pod's own IP). */
  source?: 'pod' | 'node';
  why: string;
}

export const DB_PORT = 5432;
/** A port served on a node's own namespace, to show NAT outgoing still applies off-pool. */
export const HOST_PORT = 7777;

export const FLOWS: Flow[] = [
  {
    from: 'a/frontend-1',
    to: 'b/db-1',
    proto: 'tcp',
    port: DB_PORT,
    expect: 'allow',
    source: 'pod',
    why: 'a egress allows app=db:5432; b ingress admits a frontends',
  },
  {
    from: 'a/frontend-1',
    to: 'b/db-2',
    proto: 'tcp',
    port: DB_PORT,
    expect: 'allow',
    source: 'pod',
    why: 'same, to the other b node',
  },
  {
    from: 'a/frontend-2',
    to: 'b/db-1',
    proto: 'tcp',
    port: DB_PORT,
    expect: 'allow',
    source: 'pod',
    why: 'same, from the other a node',
  },
  {
    from: 'a/web-1',
    to: 'b/db-1',
    proto: 'tcp',
    port: DB_PORT,
    expect: 'deny',
    why: "b's db admits only cluster a's frontends",
  },
  {
    from: 'a/batch-1',
    to: 'b/db-2',
    proto: 'tcp',
    port: DB_PORT,
    expect: 'deny',
    why: "b's db admits only cluster a's frontends",
  },
  {
    from: 'b/cache-1',
    to: 'b/db-1',
    proto: 'tcp',
    port: DB_PORT,
    expect: 'deny',
    why: 'local pods of b are not a frontends',
  },
  {
    from: 'a/frontend-1',
    to: 'b/db-1',
    proto: 'icmp',
    expect: 'deny',
    why: "a's frontend egress allows only TCP 5432",
  },
  {
    from: 'a/frontend-1',
    to: 'b/cache-1',
    proto: 'tcp',
    port: DB_PORT,
    expect: 'deny',
    why: "a's frontend egress allows only app=db",
  },
  {
    from: 'a/frontend-1',
    to: 'a/web-1',
    proto: 'icmp',
    expect: 'deny',
    why: "a's frontend egress allows only TCP 5432 to db",
  },
  {
    from: 'a/web-1',
    to: 'b/cache-1',
    proto: 'tcp',
    port: DB_PORT,
    expect: 'allow',
    source: 'pod',
    why: 'no policy selects either end: open, routed over VXLAN',
  },
  { from: 'a/web-1', to: 'b/web-b', proto: 'icmp', expect: 'allow', why: 'no policy selects either end' },
  { from: 'b/web-b', to: 'a/batch-1', proto: 'icmp', expect: 'allow', why: 'the overlay works both ways' },
  {
    from: 'a/web-1',
    to: 'a/frontend-2',
    proto: 'icmp',
    expect: 'allow',
    why: 'frontend has an egress-only policy; ingress stays open',
  },
  {
    from: 'a/web-1',
    to: 'b/b-node1',
    proto: 'tcp',
    port: HOST_PORT,
    expect: 'allow',
    source: 'node',
    why: 'to a non-pool address: NAT outgoing masquerades',
  },
];

/** The relabel check: this pod's label flips, and this flow must follow. */
export const RELABEL = {
  cluster: 'b',
  file: 'workloads.yaml',
  pod: 'db-1',
  from: { label: 'app: db,', to: 'app: db-retired,' },
  /** The same change as a label (for `demo --etcd`, where b's endpoints live in etcd). */
  label: { key: 'app', value: 'db', retired: 'db-retired' },
  flow: { from: 'a/frontend-1', to: 'b/db-1', proto: 'tcp' as const, port: DB_PORT },
  /** The bar: access cut (and restored) within this long of the edit. */
  deadlineMs: 2000,
};

/**
 * Cluster a's federated Service (examples/two-cluster/a/services.yaml): the databases of both
 * clusters. Its endpoints are a's db-a and b's db-1 and db-2; a's frontend must reach each by pod
 * IP, its own IP seen at the far end.
 */
export const FEDERATED_SERVICE = {
  cluster: 'a',
  namespace: 'shop',
  name: 'db-federated',
  from: 'a/frontend-1',
  expected: 3,
  /**
   * With `demo --etcd`, a's RCC for b gives etcd access only, and remote Services are read through
   * Kubernetes credentials (as in Calico): b is skipped, and only a's own db-a backs the Service.
   */
  expectedWithEtcd: 1,
};
