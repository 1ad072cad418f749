// The Kubernetes manifests under daemonset/ and the root Dockerfile: every YAML document is validated
// against the Kubernetes schemas (kubernetes-models), then checked for what an operator relies on:
// the agent's privileges, mounts and probes, the command-line contract of DESIGN.md, the wiring
// between workloads, Services, ConfigMaps and ServiceAccounts, and RBAC that grants what each
// component needs and nothing a peer cluster must not have.
//
// kubernetes-models checks types, required fields and formats but not unknown fields (a typo such as
// `hostNetwrok` validates), so everything that matters is also asserted by name below.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { ICustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import type { IJSONSchemaProps } from 'kubernetes-models/apiextensions.k8s.io/v1/JSONSchemaProps';
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import type { IPolicyRule } from 'kubernetes-models/rbac.authorization.k8s.io/v1/PolicyRule';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import type { IRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import { Secret } from 'kubernetes-models/v1/Secret';
import type { IService } from 'kubernetes-models/v1/Service';
import { Service } from 'kubernetes-models/v1/Service';
import type { IServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { parseAllDocuments } from 'yaml';
import { NODE_FLAGS } from '../../lib/node-flags.ts';
import { KUBE_RESOURCES } from '../../syncer/datastore/kube-resources.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MANIFESTS = path.join(ROOT, 'daemonset');
const NAMESPACE = 'fedmesh-system';
const PACKAGE = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  dependencies?: Record<string, string>;
  scripts?: Record<string, string>;
};
const IMAGE = `ghcr.io/fedmesh/fedmesh:${PACKAGE.version}`;
const READ = ['get', 'list', 'watch'];

// ---------------------------------------------------------------------------------------------
// Loading

interface Meta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** One YAML document, with where it came from. */
interface Doc {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  /** Path relative to daemonset/, and the document's index in its file. */
  file: string;
  index: number;
  body: Record<string, unknown>;
}

type Validatable = new (data: never) => { validate(): void };

/** Every kind the manifests may use. A document of any other kind fails the test: add it here, with
 *  its kubernetes-models class, so that nothing under daemonset/ goes unvalidated. */
const MODELS: Record<string, { model: Validatable; clusterScoped: boolean }> = {
  'v1/Namespace': { model: Namespace, clusterScoped: true },
  'v1/ServiceAccount': { model: ServiceAccount, clusterScoped: false },
  'v1/ConfigMap': { model: ConfigMap, clusterScoped: false },
  'v1/Secret': { model: Secret, clusterScoped: false },
  'v1/Service': { model: Service, clusterScoped: false },
  'apps/v1/DaemonSet': { model: DaemonSet, clusterScoped: false },
  'apps/v1/Deployment': { model: Deployment, clusterScoped: false },
  'policy/v1/PodDisruptionBudget': { model: PodDisruptionBudget, clusterScoped: false },
  'rbac.authorization.k8s.io/v1/ClusterRole': { model: ClusterRole, clusterScoped: true },
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': { model: ClusterRoleBinding, clusterScoped: true },
  'rbac.authorization.k8s.io/v1/Role': { model: Role, clusterScoped: false },
  'rbac.authorization.k8s.io/v1/RoleBinding': { model: RoleBinding, clusterScoped: false },
  'apiextensions.k8s.io/v1/CustomResourceDefinition': {
    model: CustomResourceDefinition,
    clusterScoped: true,
  },
};

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]))
    .sort();
}

function loadDocs(): Doc[] {
  const docs: Doc[] = [];
  for (const abs of walk(MANIFESTS)) {
    const file = path.relative(MANIFESTS, abs);
    if (file === 'README.md') continue;
    // A manifest in any other format (JSON, .yml.tmpl, ...) would escape the checks below.
    assert.match(file, /\.yaml$/, `daemonset/${file}: only .yaml manifests (and README.md) belong here`);
    const text = readFileSync(abs, 'utf8');
    // kubectl reads YAML 1.1 (yes/no/on/off are booleans, 0755 is octal); YAML 1.2 does not. A
    // scalar whose meaning depends on that is a trap, so both readings must agree.
    const v11 = parseAllDocuments(text, { version: '1.1' });
    const v12 = parseAllDocuments(text, { version: '1.2' });
    assert.ok(Array.isArray(v11) && Array.isArray(v12), `daemonset/${file}: not a YAML stream`);
    v11.forEach((d, index) => {
      const where = `daemonset/${file} document ${index}`;
      assert.deepEqual(d.errors, [], `${where}: YAML errors`);
      const js: unknown = d.toJS();
      assert.deepEqual(v12[index]?.toJS(), js, `${where}: reads differently as YAML 1.1 and 1.2; quote it`);
      if (js === null || js === undefined) return; // a comment-only document
      assert.ok(typeof js === 'object' && !Array.isArray(js), `${where}: not a mapping`);
      const body = js as Record<string, unknown>;
      const meta = body.metadata as Meta | undefined;
      assert.ok(
        typeof body.apiVersion === 'string' && typeof body.kind === 'string',
        `${where}: no apiVersion/kind`,
      );
      assert.ok(meta && typeof meta.name === 'string' && meta.name !== '', `${where}: no metadata.name`);
      docs.push({ apiVersion: body.apiVersion, kind: body.kind, metadata: meta, file, index, body });
    });
  }
  return docs;
}

const DOCS = loadDocs();

function where(d: Doc): string {
  return `daemonset/${d.file} #${d.index} ${d.kind}/${d.metadata.name}`;
}

function all<T>(kind: string): (T & { doc: Doc })[] {
  return DOCS.filter((d) => d.kind === kind).map((d) => ({ ...(d.body as T), doc: d }));
}

function one<T>(kind: string, name: string, file?: string): T & { doc: Doc } {
  const found = all<T>(kind).filter((o) => o.doc.metadata.name === name && (!file || o.doc.file === file));
  assert.equal(found.length, 1, `expected exactly one ${kind}/${name}${file ? ` in daemonset/${file}` : ''}`);
  return found[0]!;
}

// ---------------------------------------------------------------------------------------------
// The command-line contract (DESIGN.md): subcommands and their flags, as the manifests may use them.

interface FlagSpec {
  required: boolean;
  check: (value: string) => boolean;
}

const ENDPOINT = (v: string) => /^unix:\/.+/.test(v) || parseHostPort(v) !== undefined;
const ABSOLUTE_PATH = (v: string) => /^\/[^\s]+$/.test(v);
/** The feed is mutual TLS (DESIGN.md): the manifests give every TLS flag, never --insecure. */
const TLS_FILES: Record<string, FlagSpec> = {
  '--tls-ca-file': { required: true, check: ABSOLUTE_PATH },
  '--tls-cert-file': { required: true, check: ABSOLUTE_PATH },
  '--tls-key-file': { required: true, check: ABSOLUTE_PATH },
};
const CONTRACT: Record<string, Record<string, FlagSpec>> = {
  agent: {
    '--node': { required: true, check: (v) => v !== '' },
    '--feed': { required: true, check: ENDPOINT },
    '--iptables-backend': { required: false, check: (v) => ['auto', 'nft', 'legacy'].includes(v) },
    '--health-listen': { required: false, check: (v) => parseHostPort(v) !== undefined },
    ...TLS_FILES,
    '--tls-server-name': { required: true, check: (v) => /^[a-z0-9.-]+$/.test(v) },
  },
  syncer: {
    '--cluster': { required: true, check: (v) => v !== '' },
    '--datastore': { required: true, check: (v) => /^(file:.+|etcdv3:.+|kubernetes(:.+)?)$/.test(v) },
    '--listen': { required: true, check: ENDPOINT },
    '--health-listen': { required: false, check: (v) => parseHostPort(v) !== undefined },
    ...TLS_FILES,
    '--tls-client-cn': { required: true, check: (v) => v !== '' && v !== '.*' },
  },
  'services-controller': {
    '--cluster': { required: true, check: (v) => v !== '' },
    '--datastore': { required: true, check: (v) => /^(file:.+|etcdv3:.+|kubernetes(:.+)?)$/.test(v) },
    '--health-listen': { required: false, check: (v) => parseHostPort(v) !== undefined },
  },
};

function parseHostPort(v: string): { host: string; port: number } | undefined {
  const m = /^(.+):(\d+)$/.exec(v);
  if (!m) return undefined;
  const port = Number(m[2]);
  return port >= 1 && port <= 65535 ? { host: m[1]!, port } : undefined;
}

/** `--flag value` pairs after the subcommand. */
function parseArgs(args: string[]): { sub?: string; flags: Map<string, string>; problems: string[] } {
  const [sub, ...rest] = args;
  const flags = new Map<string, string>();
  const problems: string[] = [];
  for (let i = 0; i < rest.length; i += 2) {
    const flag = rest[i]!;
    const value = rest[i + 1];
    if (!flag.startsWith('--')) problems.push(`argument ${JSON.stringify(flag)} is not a --flag`);
    else if (value === undefined || value.startsWith('--')) {
      problems.push(`${flag} has no value`);
      i -= 1;
    } else if (flags.has(flag)) problems.push(`${flag} given twice`);
    else flags.set(flag, value);
  }
  return { sub, flags, problems };
}

// ---------------------------------------------------------------------------------------------
// Workload checks, written as functions returning problems so that the negative tests can feed
// them a broken copy.

type Workload = (IDaemonSet | IDeployment) & { doc: Doc };

function workloads(): Workload[] {
  return [...all<IDaemonSet>('DaemonSet'), ...all<IDeployment>('Deployment')];
}

function podSpec(w: IDaemonSet | IDeployment): IPodSpec {
  const spec = w.spec?.template.spec;
  assert.ok(spec, `${w.kind}/${w.metadata?.name}: no pod spec`);
  return spec;
}

function healthEndpoint(c: IContainer): { host: string; port: number } | undefined {
  const v = parseArgs(c.args ?? []).flags.get('--health-listen');
  return v === undefined ? undefined : parseHostPort(v);
}

/** Probes and --health-listen go together: a workload without a health server (the services
 *  controller has none in the contract) has no HTTP probe, one with it has both, on its port. */
function probeProblems(c: IContainer, kind: 'liveness' | 'readiness', probe: IProbe | undefined): string[] {
  const health = healthEndpoint(c);
  const get = probe?.httpGet;
  if (!health) return get ? [`httpGet ${kind} probe but no --health-listen to answer it`] : [];
  if (!get) return [`--health-listen is set but there is no httpGet ${kind} probe`];
  const problems: string[] = [];
  if (get.port !== health.port)
    problems.push(`${kind} probe port ${get.port} != --health-listen ${health.port}`);
  if (get.path !== `/${kind}`) problems.push(`${kind} probe path ${get.path} != /${kind}`);
  // A health server on a specific address (loopback) is reachable only there; the kubelet probes
  // the pod IP unless told otherwise, which `$(VAR)` from the field status.podIP is.
  const wildcard = health.host === '0.0.0.0' || health.host === '[::]';
  const podIpVar = /^\$\((\w+)\)$/.exec(health.host)?.[1];
  const podIp =
    podIpVar !== undefined &&
    c.env?.find((e) => e.name === podIpVar)?.valueFrom?.fieldRef?.fieldPath === 'status.podIP';
  if (podIp && get.host !== undefined)
    problems.push(`${kind} probe host ${get.host} is not the pod IP --health-listen uses`);
  if (!wildcard && !podIp && get.host !== health.host)
    problems.push(`${kind} probe host ${get.host ?? '(pod IP)'} cannot reach --health-listen ${health.host}`);
  if ((get.scheme ?? 'HTTP') !== 'HTTP') problems.push(`${kind} probe scheme ${get.scheme}`);
  return problems;
}

/** What every fedmesh workload must get right, whatever its component. */
function workloadProblems(w: Workload, docs: Doc[]): string[] {
  const problems: string[] = [];
  const ns = w.metadata?.namespace;
  const spec = podSpec(w);
  const selector = w.spec?.selector.matchLabels ?? {};
  const labels = w.spec?.template.metadata?.labels ?? {};
  if (Object.keys(selector).length === 0) problems.push('selector.matchLabels is empty');
  for (const [k, v] of Object.entries(selector))
    if (labels[k] !== v) problems.push(`selector ${k}=${v} does not match the pod template's labels`);

  const sa = spec.serviceAccountName;
  if (!sa) problems.push('no serviceAccountName');
  else if (
    !docs.some((d) => d.kind === 'ServiceAccount' && d.metadata.name === sa && d.metadata.namespace === ns)
  )
    problems.push(`serviceAccountName ${sa} is not a ServiceAccount in ${ns}`);

  const volumes = new Set((spec.volumes ?? []).map((v) => v.name));
  for (const c of spec.containers) {
    const where = `container ${c.name}`;
    if (c.image !== IMAGE) problems.push(`${where}: image ${c.image}, expected ${IMAGE}`);
    // The image's entrypoint is `node bin/fedmesh.js`; args carry the subcommand.
    if (c.command) problems.push(`${where}: overrides the image's entrypoint with command`);

    const args = c.args ?? [];
    const parsed = parseArgs(args);
    problems.push(...parsed.problems.map((p) => `${where}: ${p}`));
    const contract = parsed.sub === undefined ? undefined : CONTRACT[parsed.sub];
    if (!contract) problems.push(`${where}: unknown subcommand ${parsed.sub}`);
    else {
      for (const [flag, fs] of Object.entries(contract))
        if (fs.required && !parsed.flags.has(flag)) problems.push(`${where}: ${parsed.sub} needs ${flag}`);
      for (const [flag, value] of parsed.flags) {
        const fs = contract[flag];
        if (!fs) problems.push(`${where}: ${parsed.sub} has no flag ${flag} in the command-line contract`);
        else if (!/\$\(/.test(value) && !fs.check(value))
          problems.push(`${where}: ${flag} ${value} is malformed`);
      }
    }

    // Kubernetes leaves an undefined $(VAR) in args as it is: `--node $(NODE_NAM)` would start an
    // agent for a node literally named "$(NODE_NAM)".
    const env = new Map((c.env ?? []).map((e) => [e.name, e]));
    for (const a of args)
      for (const m of a.matchAll(/\$\(([^)]*)\)/g))
        if (!env.has(m[1]!)) problems.push(`${where}: args use $(${m[1]}) but no env var ${m[1]} is defined`);
    for (const e of c.env ?? []) {
      const ref = e.valueFrom?.configMapKeyRef;
      if (!ref || ref.optional) continue;
      const cm = docs.find(
        (d) => d.kind === 'ConfigMap' && d.metadata.name === ref.name && d.metadata.namespace === ns,
      );
      const data = (cm?.body as IConfigMap | undefined)?.data ?? {};
      if (!cm) problems.push(`${where}: env ${e.name} reads ConfigMap ${ref.name}, which is not in ${ns}`);
      else if (!(ref.key in data))
        problems.push(`${where}: env ${e.name} reads key ${ref.key}, missing in ${ref.name}`);
    }

    problems.push(...probeProblems(c, 'liveness', c.livenessProbe).map((p) => `${where}: ${p}`));
    problems.push(...probeProblems(c, 'readiness', c.readinessProbe).map((p) => `${where}: ${p}`));
    if (!c.resources?.requests?.cpu || !c.resources.requests.memory)
      problems.push(`${where}: no cpu and memory requests`);
    for (const m of c.volumeMounts ?? [])
      if (!volumes.has(m.name)) problems.push(`${where}: mounts undefined volume ${m.name}`);
  }
  return problems;
}

function agentProblems(ds: IDaemonSet): string[] {
  const problems: string[] = [];
  const spec = podSpec(ds);
  const c = spec.containers[0];
  if (spec.containers.length !== 1 || !c) return ['the agent pod should have exactly one container'];
  if (spec.hostNetwork !== true) problems.push('not hostNetwork');
  if (spec.dnsPolicy !== 'ClusterFirstWithHostNet') problems.push(`dnsPolicy ${spec.dnsPolicy}`);
  if (spec.priorityClassName !== 'system-node-critical')
    problems.push(`priorityClassName ${spec.priorityClassName}`);
  if (!(spec.tolerations ?? []).some((t) => t.operator === 'Exists' && !t.key && !t.effect))
    problems.push('does not tolerate every taint (operator: Exists, no key, no effect)');
  if (c.securityContext?.privileged !== true) problems.push('not privileged');
  for (const cap of ['NET_ADMIN', 'NET_RAW'])
    if (!(c.securityContext?.capabilities?.add ?? []).includes(cap))
      problems.push(`capability ${cap} not listed`);
  if (spec.automountServiceAccountToken !== false) problems.push('mounts an API token it has no use for');

  const flags = parseArgs(c.args ?? []).flags;
  if (flags.get('--node') !== '$(NODE_NAME)')
    problems.push(`--node is ${flags.get('--node')}, not $(NODE_NAME)`);
  const nodeName = (c.env ?? []).find((e) => e.name === 'NODE_NAME');
  if (nodeName?.valueFrom?.fieldRef?.fieldPath !== 'spec.nodeName')
    problems.push('NODE_NAME does not come from the downward API (spec.nodeName)');
  if (!healthEndpoint(c)) problems.push('no --health-listen: its probes have nothing to reach');

  // The hostPath mounts the dataplane needs.
  const mounts: [string, { type?: string; readOnly?: boolean }][] = [
    ['/run/xtables.lock', { type: 'FileOrCreate' }],
    ['/lib/modules', { readOnly: true }],
    ['/var/run/fedmesh', {}],
  ];
  for (const [hostPath, want] of mounts) {
    const vol = (spec.volumes ?? []).find((v) => v.hostPath?.path === hostPath);
    const mount = vol && (c.volumeMounts ?? []).find((m) => m.name === vol.name);
    if (!vol || !mount) {
      problems.push(`hostPath ${hostPath} is not mounted`);
      continue;
    }
    if (mount.mountPath !== hostPath) problems.push(`hostPath ${hostPath} is mounted at ${mount.mountPath}`);
    if (want.type && vol.hostPath?.type !== want.type)
      problems.push(`hostPath ${hostPath} type ${vol.hostPath?.type}`);
    if (want.readOnly && mount.readOnly !== true) problems.push(`hostPath ${hostPath} is not read-only`);
  }
  const strategy = ds.spec?.updateStrategy;
  if (strategy?.type !== 'RollingUpdate' || strategy.rollingUpdate?.maxUnavailable !== 1)
    problems.push('updateStrategy is not RollingUpdate with maxUnavailable 1');
  return problems;
}

// ---------------------------------------------------------------------------------------------
// RBAC: what a ServiceAccount may do, from the Roles and bindings in the manifests.

function grants(rules: IPolicyRule[], group: string, resource: string, verb: string): boolean {
  return rules.some(
    (r) =>
      (r.apiGroups ?? []).some((g) => g === group || g === '*') &&
      (r.resources ?? []).some((x) => x === resource || x === '*') &&
      r.verbs.some((v) => v === verb || v === '*') &&
      !r.resourceNames?.length,
  );
}

function roleRules(kind: string, name: string, namespace?: string): IPolicyRule[] {
  const d = DOCS.find(
    (x) => x.kind === kind && x.metadata.name === name && x.metadata.namespace === namespace,
  );
  return (d?.body as IClusterRole | undefined)?.rules ?? [];
}

function boundTo(binding: IRoleBinding, sa: string): boolean {
  return (binding.subjects ?? []).some(
    (s) => s.kind === 'ServiceAccount' && s.name === sa && s.namespace === NAMESPACE,
  );
}

/** May ServiceAccount `sa` (in fedmesh-system) do `verb` on `resource` in `namespace` (or cluster-wide)? */
function allowed(sa: string, group: string, resource: string, verb: string, namespace?: string): boolean {
  for (const b of all<IRoleBinding>('ClusterRoleBinding'))
    if (boundTo(b, sa) && grants(roleRules('ClusterRole', b.roleRef.name), group, resource, verb))
      return true;
  if (namespace === undefined) return false;
  for (const b of all<IRoleBinding>('RoleBinding')) {
    if (b.doc.metadata.namespace !== namespace || !boundTo(b, sa)) continue;
    const rules =
      b.roleRef.kind === 'ClusterRole'
        ? roleRules('ClusterRole', b.roleRef.name)
        : roleRules('Role', b.roleRef.name, namespace);
    if (grants(rules, group, resource, verb)) return true;
  }
  return false;
}

/** The read-only role a cluster grants its peers, checked against what may be federated. */
const REMOTE_READ: Record<string, string[]> = {
  '': ['endpoints', 'namespaces', 'nodes', 'pods', 'serviceaccounts', 'services'],
  'crd.projectcalico.org': [
    'globalnetworksets',
    'hostendpoints',
    'ipamblocks',
    'ippools',
    'networksets',
    'nodes',
    'profiles',
    'workloadendpoints',
  ],
  // A peer's services controller (federated services, MCS API).
  'discovery.k8s.io': ['endpointslices'],
  'multicluster.x-k8s.io': ['serviceexports'],
};

function remoteRoleProblems(role: IClusterRole): string[] {
  const problems: string[] = [];
  const granted: Record<string, Set<string>> = {};
  for (const r of role.rules ?? []) {
    for (const v of r.verbs) if (!READ.includes(v)) problems.push(`grants verb ${v}`);
    for (const g of r.apiGroups ?? []) {
      if (!(g in REMOTE_READ)) problems.push(`grants API group ${JSON.stringify(g)}`);
      for (const x of r.resources ?? []) {
        if (x === 'secrets' || /polic|tiers/.test(x) || x.includes('*')) problems.push(`grants ${x}`);
        granted[g] ??= new Set();
        granted[g].add(x);
      }
    }
    if (r.nonResourceURLs?.length) problems.push('grants non-resource URLs');
  }
  for (const [g, resources] of Object.entries(REMOTE_READ)) {
    const have = [...(granted[g] ?? [])].sort();
    if (JSON.stringify(have) !== JSON.stringify(resources))
      problems.push(
        `group ${JSON.stringify(g)}: grants [${have}], a remote syncer reads exactly [${resources}]`,
      );
    for (const x of resources)
      for (const v of READ)
        if (!grants(role.rules ?? [], g, x, v)) problems.push(`does not grant ${v} on ${x}`);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// A small structural-schema check for RemoteClusterConfigurations: the API server prunes fields a
// CRD does not declare, silently, so a field fedmesh reads but the CRD lacks would vanish.

function schemaProblems(schema: IJSONSchemaProps, value: unknown, at: string): string[] {
  const problems: string[] = [];
  const enumValues = schema.enum as unknown[] | undefined;
  if (enumValues && !enumValues.includes(value)) problems.push(`${at}: ${JSON.stringify(value)} not in enum`);
  if (schema.type === 'string' && typeof value !== 'string') problems.push(`${at}: not a string`);
  if (schema.type === 'object') {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return [`${at}: not an object`];
    const obj = value as Record<string, unknown>;
    for (const r of schema.required ?? []) if (!(r in obj)) problems.push(`${at}.${r}: required`);
    for (const [k, v] of Object.entries(obj)) {
      const sub = schema.properties?.[k];
      if (sub) problems.push(...schemaProblems(sub, v, `${at}.${k}`));
      else if (!schema['x-kubernetes-preserve-unknown-fields'] && schema.properties)
        problems.push(`${at}.${k}: not in the schema (the API server would prune it)`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------

describe('daemonset/ manifests: Kubernetes schemas', () => {
  test('the manifests are there', () => {
    const files = new Set(DOCS.map((d) => d.file));
    for (const f of [
      'namespace.yaml',
      'agent-daemonset.yaml',
      'syncer-deployment.yaml',
      'services-controller-deployment.yaml',
      'rbac.yaml',
      'remote-cluster-access.yaml',
      'crds/remoteclusterconfigurations.yaml',
    ])
      assert.ok(files.has(f), `daemonset/${f} is missing or empty`);
  });

  test('every document has a known kind and validates against its schema', () => {
    for (const d of DOCS) {
      const known = MODELS[`${d.apiVersion}/${d.kind}`];
      assert.ok(known, `${where(d)}: unknown apiVersion/kind ${d.apiVersion}/${d.kind}: add it to MODELS`);
      const obj = new known.model(d.body as never);
      assert.doesNotThrow(() => obj.validate(), `${where(d)} does not validate`);
    }
  });

  test('namespaced objects are in fedmesh-system, cluster-scoped ones have no namespace', () => {
    for (const d of DOCS) {
      const clusterScoped = MODELS[`${d.apiVersion}/${d.kind}`]?.clusterScoped;
      if (clusterScoped) assert.equal(d.metadata.namespace, undefined, `${where(d)}: cluster-scoped`);
      else assert.equal(d.metadata.namespace, NAMESPACE, `${where(d)}: namespace`);
    }
  });

  test('no object is defined twice', () => {
    const seen = new Map<string, string>();
    for (const d of DOCS) {
      const group = d.apiVersion.includes('/') ? d.apiVersion.split('/')[0] : '';
      const key = `${group}/${d.kind}/${d.metadata.namespace ?? ''}/${d.metadata.name}`;
      assert.ok(!seen.has(key), `${where(d)} is also defined at ${seen.get(key)}`);
      seen.set(key, where(d));
    }
  });

  test('the namespace exists and admits privileged pods (the agent is one)', () => {
    const ns = one<{ metadata: Meta }>('Namespace', NAMESPACE);
    assert.equal(ns.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'privileged');
  });

  test('negative: a broken DaemonSet does not validate', () => {
    const ds = structuredClone(one<IDaemonSet>('DaemonSet', 'fedmesh-agent').doc.body);
    const spec = (ds.spec as { template: { spec: Record<string, unknown> } }).template.spec;
    spec.containers = 'agent';
    assert.throws(() => new DaemonSet(ds as never).validate(), /containers/);
    // ...and the intact one does, so the throw above is about containers.
    assert.doesNotThrow(() =>
      new DaemonSet(one<IDaemonSet>('DaemonSet', 'fedmesh-agent').doc.body as never).validate(),
    );
  });
});

describe('daemonset/ manifests: workloads', () => {
  test('every workload: image, command-line contract, env references, probes, service account', () => {
    assert.ok(workloads().length >= 3);
    for (const w of workloads()) assert.deepEqual(workloadProblems(w, DOCS), [], where(w.doc));
  });

  test('every serviceAccountName used by a workload is a ServiceAccount in rbac.yaml', () => {
    for (const w of workloads()) {
      const sa = podSpec(w).serviceAccountName;
      assert.ok(sa, `${where(w.doc)}: no serviceAccountName`);
      one<IServiceAccount>('ServiceAccount', sa, 'rbac.yaml');
    }
  });

  test('agent: host network, privileged, dataplane mounts, probes on its --health-listen port', () => {
    const ds = one<IDaemonSet>('DaemonSet', 'fedmesh-agent', 'agent-daemonset.yaml');
    assert.deepEqual(agentProblems(ds), []);
    const c = podSpec(ds).containers[0]!;
    const args = c.args ?? [];
    assert.equal(args[0], 'agent');
    assert.ok(args.includes('--node') && args.includes('--feed'), 'the agent needs --node and --feed');
    assert.deepEqual(healthEndpoint(c), { host: '127.0.0.1', port: 9099 });
    assert.equal(c.livenessProbe?.httpGet?.port, 9099);
    assert.equal(c.readinessProbe?.httpGet?.port, 9099);
    assert.equal(c.env?.find((e) => e.name === 'FEDMESH_LOG_LEVEL')?.value, 'info');
  });

  test("agent's --feed reaches the syncer: Service, port, targetPort, the syncer's --listen", () => {
    const agent = one<IDaemonSet>('DaemonSet', 'fedmesh-agent');
    const feed = parseArgs(podSpec(agent).containers[0]?.args ?? []).flags.get('--feed') ?? '';
    const hp = parseHostPort(feed);
    assert.ok(hp, `--feed ${feed}`);
    const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?$/.exec(hp.host);
    assert.ok(m, `--feed host ${hp.host} is not a Service's DNS name`);
    const service = all<IService>('Service').find(
      (s) => s.metadata?.name === m[1] && s.metadata?.namespace === m[2],
    );
    assert.ok(service, `--feed names Service ${m[2]}/${m[1]}, which is not in the manifests`);
    const port = service.spec?.ports?.find((p) => p.port === hp.port);
    assert.ok(port, `Service ${m[1]} has no port ${hp.port}`);
    assert.equal(port.name, 'grpc');

    const selector = service.spec?.selector ?? {};
    const backends = workloads().filter((w) =>
      Object.entries(selector).every(([k, v]) => w.spec?.template.metadata?.labels?.[k] === v),
    );
    assert.equal(backends.length, 1, `Service ${m[1]} should select exactly one workload`);
    const syncer = podSpec(backends[0]!).containers[0]!;
    const target = port.targetPort ?? port.port;
    const containerPort = syncer.ports?.find((p) => p.name === target || p.containerPort === target);
    assert.ok(containerPort, `targetPort ${target} is not a port of the selected pods`);
    const listen = parseHostPort(parseArgs(syncer.args ?? []).flags.get('--listen') ?? '');
    assert.equal(
      listen?.port,
      containerPort.containerPort,
      "the syncer's --listen port is not the Service's target",
    );
    assert.equal(parseArgs(syncer.args ?? []).sub, 'syncer');
  });

  test('syncer: cluster name from fedmesh-config, probes on 9098, Service port 5473 named grpc', () => {
    const d = one<IDeployment>('Deployment', 'fedmesh-syncer', 'syncer-deployment.yaml');
    const c = podSpec(d).containers[0]!;
    const flags = parseArgs(c.args ?? []).flags;
    assert.equal(flags.get('--cluster'), '$(CLUSTER_NAME)');
    assert.equal(flags.get('--datastore'), 'kubernetes');
    assert.equal(flags.get('--listen'), '0.0.0.0:5473');
    const ref = c.env?.find((e) => e.name === 'CLUSTER_NAME')?.valueFrom?.configMapKeyRef;
    assert.deepEqual([ref?.name, ref?.key], ['fedmesh-config', 'cluster_name']);
    assert.ok(one<IConfigMap>('ConfigMap', 'fedmesh-config').data?.cluster_name);
    assert.equal(c.livenessProbe?.httpGet?.port, 9098);
    assert.equal(c.readinessProbe?.httpGet?.port, 9098);
    const svc = one<IService>('Service', 'fedmesh-syncer', 'syncer-deployment.yaml');
    assert.equal(svc.spec?.type ?? 'ClusterIP', 'ClusterIP');
    assert.deepEqual(
      svc.spec?.ports?.map((p) => [p.name, p.port]),
      [['grpc', 5473]],
    );
    assert.equal(podSpec(d).serviceAccountName, 'fedmesh-syncer');
  });

  test('the feed is mutual TLS: Secrets mounted, flags pointing into them, names that match', () => {
    const syncer = podSpec(one<IDeployment>('Deployment', 'fedmesh-syncer', 'syncer-deployment.yaml'));
    const agent = podSpec(one<IDaemonSet>('DaemonSet', 'fedmesh-agent', 'agent-daemonset.yaml'));
    const sFlags = parseArgs(syncer.containers[0]?.args ?? []).flags;
    const aFlags = parseArgs(agent.containers[0]?.args ?? []).flags;
    for (const [spec, secret] of [
      [syncer, 'fedmesh-syncer-tls'],
      [agent, 'fedmesh-agent-tls'],
    ] as const) {
      const c = spec.containers[0]!;
      const flags = parseArgs(c.args ?? []).flags;
      assert.ok(!(c.args ?? []).includes('--insecure'), `${secret}: --insecure in a manifest`);
      const vol = spec.volumes?.find((v) => v.secret?.secretName === secret);
      assert.ok(vol, `no volume from Secret ${secret}`);
      const mount = c.volumeMounts?.find((m) => m.name === vol.name);
      assert.ok(mount?.readOnly, `Secret ${secret} is not mounted read-only`);
      // Files of a kubernetes.io/tls Secret with ca.crt (what scripts/make-feed-certs.sh writes).
      assert.equal(flags.get('--tls-ca-file'), `${mount.mountPath}/ca.crt`);
      assert.equal(flags.get('--tls-cert-file'), `${mount.mountPath}/tls.crt`);
      assert.equal(flags.get('--tls-key-file'), `${mount.mountPath}/tls.key`);
      assert.ok((vol.secret?.defaultMode ?? 0o644) & 0o400, 'the key must be readable by its owner');
      assert.equal((vol.secret?.defaultMode ?? 0o644) & 0o007, 0, `${secret}: key readable by others`);
    }
    // The syncer runs as a non-root user: the Secret is group-readable through fsGroup.
    assert.equal(syncer.securityContext?.fsGroup, syncer.securityContext?.runAsGroup);
    // The names the script gives the certificates: the agent's CN, the Service's DNS name.
    const script = readFileSync(path.join(ROOT, 'scripts/make-feed-certs.sh'), 'utf8');
    assert.ok(new RegExp(`^(?:${sFlags.get('--tls-client-cn')})$`).test('fedmesh-agent'));
    assert.match(script, /leaf agent fedmesh-agent clientAuth/);
    const serverName = aFlags.get('--tls-server-name') ?? '';
    assert.equal(serverName, 'fedmesh-syncer.fedmesh-system.svc');
    assert.equal(aFlags.get('--feed')?.split(':')[0], serverName, 'the name checked is the one dialled');
    assert.ok(script.includes('DNS:fedmesh-syncer.$ns.svc'), 'the script puts the Service name in the SANs');
  });

  test('health and metrics: loopback, or the pod IP where the kubelet must reach them; never 0.0.0.0', () => {
    for (const w of workloads()) {
      const c = podSpec(w).containers[0]!;
      const v = parseArgs(c.args ?? []).flags.get('--health-listen');
      if (v === undefined) continue;
      const host = parseHostPort(v)?.host;
      assert.ok(host === '127.0.0.1' || host === '$(POD_IP)', `${where(w.doc)}: --health-listen ${v}`);
    }
    assert.equal(
      parseArgs(podSpec(one<IDaemonSet>('DaemonSet', 'fedmesh-agent')).containers[0]?.args ?? []).flags.get(
        '--health-listen',
      ),
      '127.0.0.1:9099',
    );
  });

  test('services controller: one writer, its contract arguments and service account', () => {
    const d = one<IDeployment>(
      'Deployment',
      'fedmesh-services-controller',
      'services-controller-deployment.yaml',
    );
    const c = podSpec(d).containers[0]!;
    assert.deepEqual(c.args, [
      'services-controller',
      '--cluster',
      '$(CLUSTER_NAME)',
      '--datastore',
      'kubernetes',
      '--health-listen',
      '$(POD_IP):9097',
    ]);
    assert.equal(podSpec(d).serviceAccountName, 'fedmesh-services-controller');
    assert.equal(d.spec?.replicas, 1, 'two controllers would fight over the same Endpoints');
    assert.equal(d.spec?.strategy?.type, 'Recreate');
  });

  test('negative: the workload checks catch a broken agent', () => {
    const broken = structuredClone(one<IDaemonSet>('DaemonSet', 'fedmesh-agent'));
    const spec = podSpec(broken);
    const c = spec.containers[0]!;
    c.args = ['agent', '--node', '$(NODE_NAM)', '--health-listen', '127.0.0.1:9099'];
    c.livenessProbe = { httpGet: { host: '127.0.0.1', port: 9100, path: '/liveness' } };
    delete c.readinessProbe;
    spec.hostNetwork = false;
    spec.volumes = spec.volumes?.filter((v) => v.hostPath?.path !== '/lib/modules');
    spec.serviceAccountName = 'nobody';
    const problems = [...workloadProblems(broken, DOCS), ...agentProblems(broken)].join('\n');
    for (const expected of [
      /agent needs --feed/,
      /\$\(NODE_NAM\) but no env var/,
      /liveness probe port 9100 != --health-listen 9099/,
      /no httpGet readiness probe/,
      /not hostNetwork/,
      /hostPath \/lib\/modules is not mounted/,
      /mounts undefined volume lib-modules/,
      /serviceAccountName nobody/,
    ])
      assert.match(problems, expected);
  });
});

describe('daemonset/ manifests: RBAC', () => {
  test('bindings refer to roles and ServiceAccounts that exist', () => {
    for (const b of [...all<IRoleBinding>('ClusterRoleBinding'), ...all<IRoleBinding>('RoleBinding')]) {
      const ns = b.roleRef.kind === 'Role' ? b.doc.metadata.namespace : undefined;
      assert.ok(
        DOCS.some(
          (d) =>
            d.kind === b.roleRef.kind && d.metadata.name === b.roleRef.name && d.metadata.namespace === ns,
        ),
        `${where(b.doc)}: roleRef ${b.roleRef.kind}/${b.roleRef.name} is not in the manifests`,
      );
      assert.ok((b.subjects ?? []).length > 0, `${where(b.doc)}: no subjects`);
      for (const s of b.subjects ?? []) {
        assert.equal(s.kind, 'ServiceAccount', `${where(b.doc)}: subject ${s.kind}/${s.name}`);
        one<IServiceAccount>('ServiceAccount', s.name);
        assert.equal(s.namespace, NAMESPACE);
      }
    }
  });

  test('no wildcards, and no ClusterRole reads secrets cluster-wide', () => {
    for (const r of [...all<IClusterRole>('ClusterRole'), ...all<IClusterRole>('Role')])
      for (const rule of r.rules ?? []) {
        for (const x of [...(rule.apiGroups ?? []), ...(rule.resources ?? []), ...rule.verbs])
          assert.ok(!x.includes('*'), `${where(r.doc)}: wildcard ${x}`);
        if (r.kind === 'ClusterRole')
          assert.ok(!rule.resources?.includes('secrets'), `${where(r.doc)}: secrets`);
      }
  });

  test('the agent has no permissions and no token', () => {
    const sa = one<IServiceAccount>('ServiceAccount', 'fedmesh-agent', 'rbac.yaml');
    assert.equal(sa.automountServiceAccountToken, false);
    for (const b of [...all<IRoleBinding>('ClusterRoleBinding'), ...all<IRoleBinding>('RoleBinding')])
      assert.ok(!boundTo(b, 'fedmesh-agent'), `${where(b.doc)} binds fedmesh-agent`);
  });

  test('the syncer reads everything it syncs, and the RCC secrets only in fedmesh-system', () => {
    const core = ['pods', 'namespaces', 'serviceaccounts', 'nodes', 'services', 'endpoints'];
    const calico = [
      'workloadendpoints',
      'hostendpoints',
      'profiles',
      'networkpolicies',
      'globalnetworkpolicies',
      'networksets',
      'globalnetworksets',
      'ippools',
      'ipamblocks',
      'nodes',
      'tiers',
      'remoteclusterconfigurations',
    ];
    const wanted: [string, string][] = [
      ...core.map((r): [string, string] => ['', r]),
      ['networking.k8s.io', 'networkpolicies'],
      ...calico.flatMap((r): [string, string][] => [
        ['crd.projectcalico.org', r],
        ['projectcalico.org', r],
      ]),
    ];
    for (const [g, r] of wanted)
      for (const v of READ) assert.ok(allowed('fedmesh-syncer', g, r, v), `syncer cannot ${v} ${g}/${r}`);
    for (const v of READ) {
      assert.ok(
        allowed('fedmesh-syncer', '', 'secrets', v, NAMESPACE),
        `syncer cannot ${v} secrets in ${NAMESPACE}`,
      );
      assert.ok(
        !allowed('fedmesh-syncer', '', 'secrets', v, 'default'),
        `syncer can ${v} secrets outside ${NAMESPACE}`,
      );
    }
    for (const [g, r] of [...wanted, ['', 'secrets']])
      for (const v of ['create', 'update', 'patch', 'delete'])
        assert.ok(
          !allowed('fedmesh-syncer', g!, r!, v, NAMESPACE),
          `the syncer is read-only, yet can ${v} ${r}`,
        );
  });

  test('the syncer may read every collection the kubernetes datastore reads (kube-resources.ts)', () => {
    for (const r of KUBE_RESOURCES) {
      for (const v of READ) {
        if (r.onlyInRccSecretNamespaces)
          assert.ok(
            allowed('fedmesh-syncer', r.group, r.plural, v, NAMESPACE),
            `syncer cannot ${v} ${r.plural}`,
          );
        else
          assert.ok(
            allowed('fedmesh-syncer', r.group, r.plural, v),
            `syncer cannot ${v} ${r.group}/${r.plural}`,
          );
      }
    }
  });

  test('the services controller reads services and RCCs and writes endpoints', () => {
    const sa = 'fedmesh-services-controller';
    for (const v of READ) {
      for (const r of ['services', 'endpoints']) assert.ok(allowed(sa, '', r, v), `cannot ${v} ${r}`);
      assert.ok(allowed(sa, 'projectcalico.org', 'remoteclusterconfigurations', v));
      assert.ok(allowed(sa, '', 'secrets', v, NAMESPACE), `cannot ${v} RCC secrets`);
    }
    for (const v of ['create', 'update', 'patch', 'delete'])
      assert.ok(allowed(sa, '', 'endpoints', v), `cannot ${v} endpoints`);
    assert.ok(!allowed(sa, '', 'services', 'update'), 'it writes Endpoints, never Services');
    for (const v of [...READ, 'create', 'update', 'delete']) {
      assert.ok(allowed(sa, 'discovery.k8s.io', 'endpointslices', v), `cannot ${v} endpointslices`);
      assert.ok(allowed(sa, 'multicluster.x-k8s.io', 'serviceimports', v), `cannot ${v} serviceimports`);
    }
    for (const v of READ) assert.ok(allowed(sa, 'multicluster.x-k8s.io', 'serviceexports', v));
    assert.ok(allowed(sa, 'multicluster.x-k8s.io', 'serviceexports/status', 'update'));
    assert.ok(!allowed(sa, 'multicluster.x-k8s.io', 'serviceexports', 'update'), 'it never edits exports');
  });
});

describe('daemonset/ manifests: access granted to peer clusters', () => {
  test('fedmesh-remote-cluster is read-only, exactly the federated resources, no policies, no secrets', () => {
    const role = one<IClusterRole>('ClusterRole', 'fedmesh-remote-cluster', 'remote-cluster-access.yaml');
    assert.deepEqual(remoteRoleProblems(role), []);
    for (const r of role.rules ?? []) for (const v of r.verbs) assert.ok(READ.includes(v), `verb ${v}`);
  });

  test('it grants everything a remote syncer reads from a peer (kube-resources.ts, remote)', () => {
    const role = roleRules('ClusterRole', 'fedmesh-remote-cluster');
    for (const r of KUBE_RESOURCES.filter((x) => x.remote))
      for (const v of READ)
        assert.ok(grants(role, r.group, r.plural, v), `peers cannot ${v} ${r.group}/${r.plural}`);
  });

  test('its ServiceAccount, binding and token Secret fit together', () => {
    one<IServiceAccount>('ServiceAccount', 'fedmesh-remote-cluster', 'remote-cluster-access.yaml');
    const b = one<IRoleBinding>('ClusterRoleBinding', 'fedmesh-remote-cluster', 'remote-cluster-access.yaml');
    assert.deepEqual(b.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: 'fedmesh-remote-cluster',
    });
    assert.ok(boundTo(b, 'fedmesh-remote-cluster'));
    const s = one<ISecret>('Secret', 'fedmesh-remote-cluster', 'remote-cluster-access.yaml');
    assert.equal(s.type, 'kubernetes.io/service-account-token');
    assert.equal(s.metadata?.annotations?.['kubernetes.io/service-account.name'], 'fedmesh-remote-cluster');
    // What the peer's syncer can do with that identity, through every binding in the manifests.
    assert.ok(!allowed('fedmesh-remote-cluster', '', 'secrets', 'get', NAMESPACE));
    assert.ok(!allowed('fedmesh-remote-cluster', 'projectcalico.org', 'networkpolicies', 'list'));
    assert.ok(allowed('fedmesh-remote-cluster', 'crd.projectcalico.org', 'workloadendpoints', 'watch'));
  });

  test('negative: the remote-role check catches policies, secrets and writes', () => {
    const role = structuredClone(one<IClusterRole>('ClusterRole', 'fedmesh-remote-cluster'));
    role.rules?.push(
      { apiGroups: ['crd.projectcalico.org'], resources: ['globalnetworkpolicies'], verbs: ['list'] },
      { apiGroups: [''], resources: ['secrets'], verbs: ['get'] },
      { apiGroups: [''], resources: ['pods'], verbs: ['delete'] },
    );
    const problems = remoteRoleProblems(role).join('\n');
    for (const expected of [/grants globalnetworkpolicies/, /grants secrets/, /grants verb delete/])
      assert.match(problems, expected);
  });
});

describe('daemonset/crds: RemoteClusterConfiguration', () => {
  const crd = one<ICustomResourceDefinition>(
    'CustomResourceDefinition',
    'remoteclusterconfigurations.projectcalico.org',
    'crds/remoteclusterconfigurations.yaml',
  );
  const version = crd.spec.versions[0];
  const specSchema = version?.schema?.openAPIV3Schema?.properties?.spec;

  test('group, version, scope, names; no status subresource', () => {
    assert.equal(crd.spec.group, 'projectcalico.org');
    assert.equal(crd.spec.scope, 'Cluster');
    assert.equal(crd.spec.names.kind, 'RemoteClusterConfiguration');
    assert.equal(crd.spec.names.plural, 'remoteclusterconfigurations');
    assert.equal(crd.metadata?.name, `${crd.spec.names.plural}.${crd.spec.group}`);
    assert.equal(crd.spec.versions.length, 1);
    assert.equal(version?.name, 'v3');
    assert.ok(version?.served && version.storage);
    assert.equal(version?.subresources, undefined);
  });

  test('spec schema: every field, enums, overlayRoutingMode defaults to Disabled', () => {
    assert.ok(specSchema, 'no spec schema');
    assert.deepEqual(Object.keys(specSchema.properties ?? {}).sort(), [
      'clusterAccessSecret',
      'datastoreType',
      'etcdCACertFile',
      'etcdCertFile',
      'etcdEndpoints',
      'etcdKeyFile',
      'etcdPassword',
      'etcdUsername',
      'fileDatastorePath',
      'k8sAPIEndpoint',
      'kubeconfig',
      'syncOptions',
    ]);
    const p = specSchema.properties!;
    assert.deepEqual(p.datastoreType?.enum, ['file', 'etcdv3', 'kubernetes']);
    assert.equal(p.etcdEndpoints?.type, 'string');
    assert.deepEqual(Object.keys(p.clusterAccessSecret?.properties ?? {}).sort(), [
      'kind',
      'name',
      'namespace',
    ]);
    const mode = p.syncOptions?.properties?.overlayRoutingMode;
    assert.deepEqual(mode?.enum, ['Enabled', 'Disabled']);
    assert.equal(mode?.default, 'Disabled');
  });

  test('printer columns show datastoreType and overlayRoutingMode', () => {
    const paths = (version?.additionalPrinterColumns ?? []).map((c) => c.jsonPath);
    assert.ok(paths.includes('.spec.datastoreType'));
    assert.ok(paths.includes('.spec.syncOptions.overlayRoutingMode'));
  });

  test("the RCCs of DESIGN.md and of remote-cluster-access.yaml's recipe fit the schema; bad ones do not", () => {
    assert.ok(specSchema);
    const good = [
      {
        datastoreType: 'file',
        fileDatastorePath: '../cluster-b',
        syncOptions: { overlayRoutingMode: 'Enabled' },
      },
      {
        datastoreType: 'kubernetes',
        clusterAccessSecret: { name: 'remote-cluster-a', namespace: NAMESPACE, kind: 'Secret' },
        syncOptions: { overlayRoutingMode: 'Enabled' },
      },
      {
        datastoreType: 'etcdv3',
        etcdEndpoints: 'https://10.0.0.1:2379,https://10.0.0.2:2379',
        etcdCACertFile: '/ca',
      },
    ];
    for (const spec of good) assert.deepEqual(schemaProblems(specSchema, spec, 'spec'), []);
    const bad: [unknown, RegExp][] = [
      [{ datastoreType: 'consul' }, /datastoreType: "consul" not in enum/],
      [{ datastoreType: 'kubernetes', syncOptions: { overlayRoutingMode: 'On' } }, /overlayRoutingMode/],
      [{ datastoreType: 'file', fileDatastorPath: '/x' }, /fileDatastorPath: not in the schema/],
      [{ clusterAccessSecret: { namespace: NAMESPACE } }, /clusterAccessSecret.name: required/],
    ];
    for (const [spec, expected] of bad)
      assert.match(schemaProblems(specSchema, spec, 'spec').join('\n'), expected);
  });
});

describe('Dockerfile', () => {
  const text = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));

  test('base image, kernel tools, production install, entrypoint', () => {
    assert.deepEqual(
      lines.filter((l) => /^FROM /i.test(l)),
      ['FROM node:20-bookworm-slim'],
    );
    const apt = lines.find((l) => /apt-get install/.test(l)) ?? '';
    for (const pkg of ['iptables', 'ipset', 'iproute2'])
      assert.match(apt, new RegExp(`\\s${pkg}(\\s|$)`), pkg);
    assert.ok(
      lines.some((l) => /^RUN .*npm ci --omit=dev/.test(l)),
      'npm ci --omit=dev',
    );
    const entry = lines.find((l) => l.startsWith('ENTRYPOINT')) ?? '';
    // The flags the demo and the benchmarks run the same code with.
    const flags = NODE_FLAGS.map((f) => `"${f}", `).join('');
    assert.ok(entry.endsWith(`"node", ${flags}"bin/fedmesh.js"]`), entry);
    assert.ok(
      PACKAGE.scripts?.bench?.startsWith(`tsx ${NODE_FLAGS.join(' ')} bench/main.ts`),
      'npm run bench',
    );
    // --omit=dev drops devDependencies: what runs the TypeScript must be a runtime dependency.
    assert.ok(PACKAGE.dependencies?.tsx, 'tsx must be in dependencies, not devDependencies');
  });

  test("the image holds every runtime source folder (tsconfig's include, less tests and benchmarks)", () => {
    const tsconfig = JSON.parse(readFileSync(path.join(ROOT, 'tsconfig.json'), 'utf8')) as {
      include: string[];
    };
    const copied = new Set(
      lines
        .filter((l) => l.startsWith('COPY ') && !l.includes('--from'))
        .flatMap((l) => l.split(/\s+/).slice(1, -1))
        .map((s) => s.replace(/^\.\//, '').replace(/\/$/, '')),
    );
    for (const dir of ['bin', ...tsconfig.include.filter((d) => !['test', 'bench'].includes(d))])
      assert.ok(copied.has(dir), `the Dockerfile does not COPY ${dir}/`);
    for (const f of ['package.json', 'package-lock.json', '.npmrc']) assert.ok(copied.has(f), `COPY ${f}`);
  });
});
