// The part of a cluster's merged view that one flow can touch, for `fedmesh explain`: a verdict
// reads the deciding endpoint's labels and profiles, the policies that select it, and the items
// (endpoints, network sets) at the flow's two addresses, which its rules' selectors are matched
// against (flow-evaluator.ts: an ipset holds an address when an item the matcher selects holds
// it). Everything else in a 100,000-endpoint cluster cannot change the verdict, so it is neither
// indexed nor compiled.
import { ClusterView } from '../agent/calc/flow-evaluator.ts';
import { type Ip4, ip4ToInt, NetParseError, type ParsedCidr, parseCidrParts } from '../model/net.ts';
import { parseSelectorCached, SelectorParseError } from '../model/selector/index.ts';
import type { Update } from '../proto/service.ts';

export interface Focus {
  /** The flow's source and destination addresses. */
  ips: readonly Ip4[];
  /** Feed keys of the flow's ends that live in this cluster (whose policies decide here). */
  selves: readonly string[];
}

/** The items at an address, by their nets; a net that does not parse is kept (the view refuses it). */
function holdsAny(nets: readonly string[], ips: readonly number[]): boolean {
  for (const n of nets) {
    let c: ParsedCidr;
    try {
      c = parseCidrParts(n);
    } catch (e) {
      if (e instanceof NetParseError) return true;
      throw e;
    }
    const mask = c.len === 0 ? 0 : (0xffffffff << (32 - c.len)) >>> 0;
    for (const ip of ips) if ((ip & mask) >>> 0 === (c.base & mask) >>> 0) return true;
  }
  return false;
}

/**
 * A ClusterView of the updates the flow can touch: every profile and tier, the endpoints and
 * network sets at the flow's addresses (and the ends themselves), and the policies whose selector
 * can select one of the ends here. The view decides exactly as the whole view would: evaluateDirection
 * skips a policy that does not select the endpoint, and a rule looks only at the items holding the
 * flow's addresses.
 */
export function focusedView(cluster: string, updates: readonly Update[], focus: Focus): ClusterView {
  const ips = focus.ips.map((ip) => ip4ToInt(ip));
  const selves = new Set(focus.selves);
  const policies: Update[] = [];
  const wanted: Update[] = [];
  for (const u of updates) {
    const b = u.body;
    switch (b.case) {
      case 'policy':
        policies.push(u);
        break;
      case 'workloadEndpoint':
        if (selves.has(u.key) || holdsAny(b.value.ipv4Nets, ips)) wanted.push(u);
        break;
      case 'hostEndpoint':
        if (
          selves.has(u.key) ||
          holdsAny(
            b.value.expectedIpv4s.map((ip) => `${ip}/32`),
            ips,
          )
        )
          wanted.push(u);
        break;
      case 'networkSet':
        if (holdsAny(b.value.nets, ips)) wanted.push(u);
        break;
      default:
        wanted.push(u);
    }
  }
  const view = new ClusterView(cluster, wanted);
  const labels = focus.selves.flatMap((k) => {
    const l = view.labels(k);
    return l ? [l] : [];
  });
  for (const u of policies) if (maySelect(u, labels)) view.apply(u);
  return view;
}

/**
 * Whether a policy's selector can select one of the ends (a superset: the compiled selector also
 * limits a namespaced policy to its namespace). One that does not parse is kept, for the view to
 * refuse with its reason.
 */
function maySelect(u: Update, labels: readonly Record<string, string>[]): boolean {
  if (u.body.case !== 'policy') return true;
  try {
    const sel = parseSelectorCached(u.body.value.selector || 'all()');
    return labels.some((l) => sel.evaluate(l));
  } catch (e) {
    if (e instanceof SelectorParseError) return true;
    throw e;
  }
}
