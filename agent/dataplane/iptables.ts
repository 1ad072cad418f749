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
import { ALL_POOLS_SET, MASQ_POOLS_SET } from '../rules/names.ts';
import {
  renderFilterTable,
  renderMangleTable,
  renderNatTable,
  renderRawTable,
} from '../rules/render-tables.ts';
import type { IpSetManager } from './ipsets.ts';

export interface TableWriter {
  syncTable(table: KernelTable, desired: TableState): Promise<unknown>;
}

export class FilterTableManager {
  private readonly policies = new Map<PolicyKey, ActivePolicy>();
  private readonly endpoints = new Map<EndpointKey, LocalEndpoint>();
  private readonly profiles = new Map<ProfileId, ActiveProfile>();
  private readonly hostEndpoints = new Map<EndpointKey, LocalHostEndpoint>();
  private vxlan = false;
  private dirty = true;

  constructor(private readonly writer: TableWriter) {}

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
    this.dirty = true;
  }

  get endpointCount(): number {
    return this.endpoints.size;
  }

  markDirty(): void {
    this.dirty = true;
  }

  render(): TableState {
    return renderFilterTable({
      policies: this.policies.values(),
      profiles: this.profiles.values(),
      endpoints: this.endpoints.values(),
      hostEndpoints: this.hostEndpoints.values(),
      vxlan: this.vxlan,
    });
  }

  async apply(): Promise<boolean> {
    if (!this.dirty) return false;
    await this.writer.syncTable('filter', this.render());
    this.dirty = false;
    return true;
  }
}

/**
 * The mangle and raw tables: pre-DNAT and untracked policy on this node's host endpoints. Both
 * stay empty (nothing of ours in the kernel) on a node without host endpoints.
 */
export class HostTablesManager {
  private readonly policies = new Map<PolicyKey, ActivePolicy>();
  private readonly hostEndpoints = new Map<EndpointKey, LocalHostEndpoint>();
  private dirty = true;
  /** The kernel holds none of ours in either table (checked since the last resync). */
  private knownEmpty = false;

  constructor(private readonly writer: TableWriter) {}

  onUpdate(msg: DataplaneMessage): void {
    switch (msg.kind) {
      case 'ActivePolicyUpdate':
        this.policies.set(msg.policy.key, msg.policy);
        break;
      case 'ActivePolicyRemove':
        this.policies.delete(msg.key);
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
    this.dirty = true;
  }

  markDirty(): void {
    this.dirty = true;
    this.knownEmpty = false;
  }

  async apply(): Promise<boolean> {
    if (!this.dirty) return false;
    // Most nodes have no host endpoint: policy churn must not cost two table reads each time.
    if (this.hostEndpoints.size === 0 && this.knownEmpty) {
      this.dirty = false;
      return false;
    }
    const input = { policies: [...this.policies.values()], hostEndpoints: [...this.hostEndpoints.values()] };
    await this.writer.syncTable('mangle', renderMangleTable(input));
    await this.writer.syncTable('raw', renderRawTable(input));
    this.knownEmpty = this.hostEndpoints.size === 0;
    this.dirty = false;
    return true;
  }
}

/**
 * NAT outgoing: every pool (local and remote, disabled too) goes into the all-pools set; only local
 * natOutgoing pools into the masquerade-source set. Remote pools never masquerade.
 */
export class NatManager {
  private readonly pools = new Map<string, Pool>();
  private dirty = true;

  constructor(
    private readonly writer: TableWriter,
    private readonly ipsets: IpSetManager,
  ) {
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

  markDirty(): void {
    this.dirty = true;
  }

  async apply(): Promise<boolean> {
    if (!this.dirty) return false;
    await this.writer.syncTable('nat', renderNatTable());
    this.dirty = false;
    return true;
  }
}

export type { IptablesBackend };
