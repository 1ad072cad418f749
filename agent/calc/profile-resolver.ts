// Which profiles the local endpoints name, and their rules (Felix's profiles after the tiers). A
// profile is active while a local endpoint names it; only active profiles' rule matchers are
// referenced, as with policies. A named profile the feed has not (yet) sent is active with no
// rules: its chain exists and accepts nothing, so the endpoint's "Drop if no profiles matched"
// decides rather than a jump to a missing chain refusing the whole table.

import type { CompiledProfile } from '../../policy/compiler.ts';
import type { LabelIndex } from './label-index.ts';
import type { EndpointKey, MessageSink, ProfileId } from './messages.ts';

export class ProfileResolver {
  private readonly rules = new Map<ProfileId, CompiledProfile>();
  private readonly byEndpoint = new Map<EndpointKey, readonly ProfileId[]>();
  private readonly users = new Map<ProfileId, Set<EndpointKey>>();

  constructor(
    private readonly index: LabelIndex,
    private readonly sink: MessageSink,
  ) {}

  get activeCount(): number {
    return this.users.size;
  }

  /** A local profile's rules were set (or deleted: undefined). */
  setProfile(id: ProfileId, compiled: CompiledProfile | undefined): void {
    const old = this.rules.get(id);
    if (compiled) this.rules.set(id, compiled);
    else this.rules.delete(id);
    if (!this.users.has(id)) return;
    // New references before old ones are dropped, so a shared ipset is never removed and re-added.
    for (const m of compiled?.matchers ?? []) this.index.refMatcher(m);
    this.sendActive(id);
    for (const m of old?.matchers ?? []) this.index.unrefMatcher(m.id);
  }

  /** The profiles a local endpoint names (none: the endpoint is gone or no longer local). */
  setEndpoint(key: EndpointKey, profiles: readonly ProfileId[]): void {
    const before = this.byEndpoint.get(key) ?? [];
    if (profiles.length > 0) this.byEndpoint.set(key, [...profiles]);
    else this.byEndpoint.delete(key);
    for (const id of profiles) {
      let users = this.users.get(id);
      if (!users) {
        users = new Set();
        this.users.set(id, users);
        for (const m of this.rules.get(id)?.matchers ?? []) this.index.refMatcher(m);
        this.sendActive(id);
      }
      users.add(key);
    }
    const now = new Set(profiles);
    for (const id of before) {
      if (now.has(id)) continue;
      const users = this.users.get(id);
      if (!users?.delete(key) || users.size > 0) continue;
      this.users.delete(id);
      this.sink.send({ kind: 'ActiveProfileRemove', id });
      for (const m of this.rules.get(id)?.matchers ?? []) this.index.unrefMatcher(m.id);
    }
  }

  private sendActive(id: ProfileId): void {
    const p = this.rules.get(id);
    this.sink.send({
      kind: 'ActiveProfileUpdate',
      profile: { id, inbound: p?.inbound ?? [], outbound: p?.outbound ?? [] },
    });
  }
}
