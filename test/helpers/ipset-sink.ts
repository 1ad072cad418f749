// A dataplane-message sink for calculation tests that keeps, per ipset id, its current members.
import type { DataplaneMessage, MessageSink } from '../../agent/calc/messages.ts';

export function ipsetCollector(): { sink: MessageSink; sets: Map<string, Set<string>> } {
  const sets = new Map<string, Set<string>>();
  const sink = {
    send: (m: DataplaneMessage) => {
      if (m.kind === 'IPSetUpdate') sets.set(m.id, new Set(m.members));
      else if (m.kind === 'IPSetDelta') {
        for (const a of m.added) sets.get(m.id)?.add(a);
        for (const r of m.removed) sets.get(m.id)?.delete(r);
      } else if (m.kind === 'IPSetRemove') sets.delete(m.id);
    },
  };
  return { sink, sets };
}
