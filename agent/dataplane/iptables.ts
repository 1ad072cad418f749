// The filter and nat tables: the filter table from active policies and local endpoints (endpoint
// chains, dispatch, policy chains), the nat table's NAT-outgoing chain. Each apply renders the
// whole table (pure) and lets the driver write only the difference, one restore per table.
import type { IptablesBackend, Table as KernelTable, TableState } from '../../native/iptables.ts';
import type {
  ActivePolicy,
  ActiveProfile,
  DataplaneMessage,
  EndpointKey,
  LocalEndpoint,
  LocalHostEndpoint,
  PolicyKey,
  Pool,
  ProfileId,
} from '../calc/messages.ts';
import {
  ALL_POOLS_SET,
  fromWorkloadChain,
  ipsetName,
  MASQ_POOLS_SET,
  policyChain,
  toWorkloadChain,
} from '../rules/names.ts';
import {
  renderFilterTable,
  renderMangleTable,
  renderNatTable,
  renderPolicyChains,
  renderRawTable,
} from '../rules/render-tables.ts';
import { Generations } from './generation.ts';
import type { IpSetManager } from './ipsets.ts';
import { type Refusal, RefusalLog } from './refusals.ts';

export interface TableSyncResult {
  /** Chains the kernel refused (kept at their last good version, or absent). */
  refused?: readonly { chain: string; reason: string }[];
}

export interface TableWriter {
  /** What it resolves to may say what the kernel refused (a TableSyncResult). */
  /**
   * `reuseLastWrite`: nothing but our own writes changed the table since the last sync, so the
   * writer may plan against what that sync left instead of reading the table back.
   */
  syncTable(table: KernelTable, desired: TableState, opts?: { reuseLastWrite?: boolean }): Promise<unknown>;
  /** Of these tables, those in which someone changed what our last sync left (drift check). */
  driftedTables?(tables: readonly KernelTable[]): Promise<KernelTable[]>;
  /**
   * Plan the sync of `desired` now (a syncTable of the same object soon after only writes), while
   * the pass waits for something else: the ipset restore the tables must follow.
   */
  prepareTable?(table: KernelTable, desired: TableState, opts?: { reuseLastWrite?: boolean }): void;
  /**
   * As prepareTable, after writing the chains of `desired` the kernel lacks, unlinked: nothing
   * reaches them before the syncTable that follows. A pass stages while the ipset restore fills
   * the sets those chains name (they exist by then).
   */
  stageTable?(table: KernelTable, desired: TableState, opts?: { reuseLastWrite?: boolean }): Promise<unknown>;
  /** Whether `stageTable` loads new chains while the ipsets fill (nf_tables; legacy writes whole tables). */
  readonly stagesBesideSets?: boolean;
  /** Read these tables (one save) into what the next syncs with `reuseLastWrite` plan against. */
  readTables?(tables: readonly KernelTable[]): Promise<void>;
  /** Another process changed one of these tables (when the writer can tell). */
  onForeignChange?(fn: (tables: KernelTable[]) => void): void;
  close?(): void;
}

/** A table manager as the dataplane's pass sees it. */
export interface TableManager {
  /** The tables its next apply must read first (a start, a resync, a failure), if it writes. */
  tablesToRead(): KernelTable[];
  /** Those tables were just read for it (TableWriter.readTables): plan against that read. */
  primed(): void;
  apply(): Promise<boolean>;
  /**
   * Render and plan the next apply now (optional work ahead: the pass calls it while the ipset
   * restore runs, so that apply only writes).
   */
  prepare(): void;
  /**
   * As prepare, and write ahead what loads without changing any packet's fate: new chains,
   * unlinked (the pass calls it once the sets exist and while their members go in).
   */
  stage(): Promise<void>;
  /** The tables it writes. */
  readonly tables: readonly KernelTable[];
  /**
   * One of them drifted: rewrite it on the next pass, planned against the save the drift check
   * made (the writer keeps it).
   */
  drifted(): void;
}

export interface FilterFaults {
  /**
   * Test hook: policies (by `namespace/name`, `name` or key) whose chains get a rule no kernel
   * loads (a jump to a chain that does not exist), to prove a refusal holds back nothing else.
   */
  unloadablePolicies?: ReadonlySet<string>;
}

const FAULT_TARGET = 'cali-fault-injected';

/**
 * What every table manager shares: the generation of the state it wants written, and whether its
 * next write must read the kernel first (at start, after a resync or a failed write) or can plan
 * against what its last write left.
 */
abstract class TableSyncer implements TableManager {
  protected readonly gen = new Generations();
  private reread = true;
  abstract readonly tables: readonly KernelTable[];

  markDirty(): void {
    this.reread = true;
    this.gen.bump();
  }

  drifted(): void {
    this.gen.bump();
  }

  tablesToRead(): KernelTable[] {
    return this.reread && this.gen.pending ? [...this.tables] : [];
  }

  primed(): void {
    this.reread = false;
  }

  prepare(): void {
    if (this.gen.pending) this.plan(!this.reread);
  }

  async stage(): Promise<void> {
    if (this.gen.pending) await this.stageAhead(!this.reread);
  }

  /** Work ahead of `write` (see TableManager.prepare); none unless a manager has some worth it. */
  protected plan(_reuseLastWrite: boolean): void {}

  /** Writes ahead of `write` (see TableManager.stage); by default none, only the plan. */
  protected async stageAhead(reuseLastWrite: boolean): Promise<void> {
    this.plan(reuseLastWrite);
  }

  async apply(): Promise<boolean> {
    if (!this.gen.pending) return false;
    const gen = this.gen.begin();
    const reuseLastWrite = !this.reread;
    // A write that throws leaves the kernel unknown: the next one reads it first.
    this.reread = true;
    await this.write(reuseLastWrite);
    this.reread = false;
    this.gen.done(gen);
    return true;
  }

  /** Write the wanted tables; `reuseLastWrite`: plan against what the last write left. */
  protected abstract write(reuseLastWrite: boolean): Promise<void>;
}

export class FilterTableManager extends TableSyncer {
  private readonly policies = new Map<PolicyKey, ActivePolicy>();
  private readonly endpoints = new Map<EndpointKey, LocalEndpoint>();
  /** Policies that rendered once: rendering is pure, so an unchanged object renders again. */
  private readonly renderable = new WeakSet<ActivePolicy>();
  private readonly refusals = new RefusalLog('a policy', 'policies');
  private readonly profiles = new Map<ProfileId, ActiveProfile>();
  private readonly hostEndpoints = new Map<EndpointKey, LocalHostEndpoint>();
  private vxlan = false;

  constructor(
    private readonly writer: TableWriter,
    private readonly faults: FilterFaults = {},
  ) {
    super();
  }

  /** What the kernel (or the renderer) refused in the last write. */
  get refused(): readonly Refusal[] {
    return this.refusals.list;
  }

  onUpdate(msg: DataplaneMessage): void {
    switch (msg.kind) {
      case 'ActivePolicyUpdate':
        this.policies.set(msg.policy.key, msg.policy);
        break;
      case 'ActivePolicyRemove':
        this.policies.delete(msg.key);
        break;
      case 'ActiveProfileUpdate':
        this.profiles.set(msg.profile.id, msg.profile);
        break;
      case 'ActiveProfileRemove':
        this.profiles.delete(msg.id);
        break;
      case 'HostConfigUpdate': {
        // The VXLAN guard in cali-INPUT exists while this node runs VXLAN (as Felix's VXLANEnabled).
        const vxlan = Boolean(msg.config.nodeIp && msg.config.tunnelIp);
        if (vxlan === this.vxlan) return;
        this.vxlan = vxlan;
        break;
      }
      case 'EndpointUpdate':
        this.endpoints.set(msg.endpoint.key, msg.endpoint);
        break;
      case 'EndpointRemove':
        this.endpoints.delete(msg.key);
        break;
      case 'HostEndpointUpdate':
        this.hostEndpoints.set(msg.endpoint.key, msg.endpoint);
        break;
      case 'HostEndpointRemove':
        this.hostEndpoints.delete(msg.key);
        break;
      default:
        return;
    }
    this.gen.bump();
  }

  /** The active policies and this node's host endpoints: the mangle and raw tables render these too. */
  get activePolicies(): Iterable<ActivePolicy> {
    return this.policies.values();
  }

  get localHostEndpoints(): Iterable<LocalHostEndpoint> {
    return this.hostEndpoints.values();
  }

  get hostEndpointCount(): number {
    return this.hostEndpoints.size;
  }

  get endpointCount(): number {
    return this.endpoints.size;
  }

  readonly tables = ['filter'] as const;

  render(): TableState {
    return this.renderChecked().table;
  }

  /** The render made ahead of the write (prepare), with the generation it renders. */
  private ahead: { gen: number; rendered: { table: TableState; failed: Refusal[] } } | undefined;

  protected override plan(reuseLastWrite: boolean): void {
    const gen = this.gen.begin();
    const rendered = this.renderChecked();
    this.ahead = { gen, rendered };
    this.writer.prepareTable?.('filter', rendered.table, { reuseLastWrite });
  }

  /** A cold start's 25,000 rules load while the ipset restore fills their sets, not after it. */
  protected override async stageAhead(reuseLastWrite: boolean): Promise<void> {
    if (this.writer.stageTable === undefined) return this.plan(reuseLastWrite);
    const gen = this.gen.begin();
    const rendered = this.renderChecked();
    this.ahead = { gen, rendered };
    await this.writer.stageTable('filter', rendered.table, { reuseLastWrite });
  }

  /**
   * The table, without the policies the renderer cannot render (each is refused alone: the
   * endpoint chains jumping to it are then refused by the kernel and keep their last version).
   */
  private renderChecked(): { table: TableState; failed: Refusal[] } {
    const failed: Refusal[] = [];
    const ok: ActivePolicy[] = [];
    for (const p of this.policies.values()) {
      if (!this.renderable.has(p)) {
        try {
          renderPolicyChains(p);
          this.renderable.add(p);
        } catch (e) {
          const reason = `cannot be rendered: ${(e as Error).message}`;
          failed.push({ table: 'filter', object: policyChain('in', p.key), policy: p.displayName, reason });
          continue;
        }
      }
      ok.push(p);
    }
    const table = renderFilterTable({
      policies: ok,
      profiles: this.profiles.values(),
      endpoints: this.endpoints.values(),
      hostEndpoints: this.hostEndpoints.values(),
      vxlan: this.vxlan,
    });
    this.injectFaults(table);
    return { table, failed };
  }

  private injectFaults(table: TableState): void {
    const names = this.faults.unloadablePolicies;
    if (!names?.size) return;
    for (const p of this.policies.values()) {
      if (!names.has(p.displayName) && !names.has(p.key)) continue;
      for (const dir of ['in', 'out'] as const) {
        const chain = table.chains.find((c) => c.name === policyChain(dir, p.key));
        chain?.rules.push({ match: '', action: `-j ${FAULT_TARGET}`, comment: 'fault injected by a test' });
      }
    }
  }

  /** The policies whose rules use an ipset (by its kernel name). */
  policiesUsingSet(name: string): string[] {
    const out: string[] = [];
    for (const p of this.policies.values()) {
      const ids = [...p.inbound, ...p.outbound].flatMap((r) =>
        [r.src, r.dst].flatMap((e) => [
          ...e.ipSets,
          ...e.notIpSets,
          ...e.namedPortIpSets,
          ...(e.notNamedPortIpSets ?? []),
        ]),
      );
      if (ids.some((id) => ipsetName(id) === name)) out.push(p.displayName);
    }
    return out;
  }

  /** The policy or endpoint a chain of ours belongs to. */
  private owners(): Map<string, { policy?: string; endpoint?: string }> {
    const out = new Map<string, { policy?: string; endpoint?: string }>();
    for (const p of this.policies.values())
      for (const dir of ['in', 'out'] as const) out.set(policyChain(dir, p.key), { policy: p.displayName });
    for (const e of this.endpoints.values()) {
      out.set(toWorkloadChain(e.interfaceName), { endpoint: e.key });
      out.set(fromWorkloadChain(e.interfaceName), { endpoint: e.key });
    }
    return out;
  }

  protected async write(reuseLastWrite: boolean): Promise<void> {
    const ahead = this.ahead;
    this.ahead = undefined;
    // Nothing arrived since the render made ahead: write that one (the writer holds its plan).
    const { table, failed } = ahead?.gen === this.gen.begin() ? ahead.rendered : this.renderChecked();
    const res = (await this.writer.syncTable('filter', table, { reuseLastWrite })) as
      | TableSyncResult
      | undefined;
    // Who owns a chain is asked only when something was refused: a map of every chain per pass is not free.
    const owners = res?.refused?.length ? this.owners() : undefined;
    const refused = (res?.refused ?? []).map(
      (r): Refusal => ({ table: 'filter', object: r.chain, ...owners?.get(r.chain), reason: r.reason }),
    );
    this.refusals.set([...failed, ...refused]);
  }
}

/**
 * The mangle and raw tables: pre-DNAT and untracked policy on this node's host endpoints. Both
 * stay empty (nothing of ours in the kernel) on a node without host endpoints.
 */
export class HostTablesManager extends TableSyncer {
  readonly tables = ['mangle', 'raw'] as const;

  constructor(
    private readonly writer: TableWriter,
    /** The filter table's manager holds the same policies and host endpoints: read them there. */
    private readonly source: FilterTableManager,
  ) {
    super();
  }

  onUpdate(msg: DataplaneMessage): void {
    switch (msg.kind) {
      case 'ActivePolicyUpdate':
      case 'ActivePolicyRemove':
      case 'HostEndpointUpdate':
      case 'HostEndpointRemove':
        this.gen.bump();
    }
  }

  /**
   * Most nodes have no host endpoint: both tables render empty, and with the last write reused
   * (no read-back) a pass that finds them still empty writes and reads nothing.
   */
  protected async write(reuseLastWrite: boolean): Promise<void> {
    const input = {
      policies: [...this.source.activePolicies],
      hostEndpoints: [...this.source.localHostEndpoints],
    };
    await this.writer.syncTable('mangle', renderMangleTable(input), { reuseLastWrite });
    await this.writer.syncTable('raw', renderRawTable(input), { reuseLastWrite });
  }
}

/**
 * NAT outgoing: every pool (local and remote, disabled too) goes into the all-pools set; only local
 * natOutgoing pools into the masquerade-source set. Remote pools never masquerade.
 */
export class NatManager extends TableSyncer {
  readonly tables = ['nat'] as const;
  private readonly pools = new Map<string, Pool>();

  constructor(
    private readonly writer: TableWriter,
    private readonly ipsets: IpSetManager,
  ) {
    super();
    this.updateSets();
  }

  onUpdate(msg: DataplaneMessage): void {
    if (msg.kind === 'PoolUpdate') this.pools.set(msg.pool.cidr, msg.pool);
    else if (msg.kind === 'PoolRemove') this.pools.delete(msg.cidr);
    else return;
    this.updateSets();
  }

  private updateSets(): void {
    const all = [...this.pools.values()];
    this.ipsets.replace(
      ALL_POOLS_SET,
      'hash:net',
      all.map((p) => p.cidr),
    );
    this.ipsets.replace(
      MASQ_POOLS_SET,
      'hash:net',
      all.filter((p) => p.local && p.natOutgoing).map((p) => p.cidr),
    );
  }

  protected async write(reuseLastWrite: boolean): Promise<void> {
    await this.writer.syncTable('nat', renderNatTable(), { reuseLastWrite });
  }
}

export type { IptablesBackend };
