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
import { renderFilterTable, renderNatTable } from '../rules/render-tables.ts';
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
