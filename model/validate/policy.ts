// NetworkPolicy and GlobalNetworkPolicy (projectcalico.org/v3): rules, entity rules, defaults.
import { z } from 'zod';
import type { Action, EntityRule, PolicySpec, Rule } from '../resources.ts';
import { checked, checkInt, checkName, enumSchema, FieldError, requireString } from './common.ts';
import {
  addressList,
  checkCidr,
  checkProtocol,
  portListSchema,
  protocolHasPorts,
  protocolIsIcmp,
} from './fields.ts';

const optionalString = checked((v) => requireString(v)).optional();

/**
 * Fields Calico knows that fedmesh does not implement. Ignoring them like an unknown field would
 * silently widen what a rule or policy matches, so they are refused instead.
 */
function refuseUnsupported(fields: Record<string, string>) {
  return (obj: Record<string, unknown>, ctx: z.RefinementCtx) => {
    for (const [field, why] of Object.entries(fields)) {
      const v = obj[field];
      if (v !== undefined && v !== '' && !(Array.isArray(v) && v.length === 0)) {
        ctx.addIssue({ code: 'custom', message: `not supported by fedmesh: ${why}`, path: [field] });
      }
    }
  };
}

const entityRuleSchema = z
  .object({
    selector: optionalString,
    notSelector: optionalString,
    namespaceSelector: optionalString,
    nets: addressList(checkCidr, false),
    notNets: addressList(checkCidr, false),
    ports: portListSchema,
    notPorts: portListSchema,
    serviceAccounts: z
      .object({
        names: z.array(checked(requireString)).default([]),
        selector: optionalString,
      })
      .optional(),
    services: z.unknown().optional(),
  })
  .superRefine(refuseUnsupported({ services: 'match on Kubernetes services is not implemented' }))
  .transform((e): EntityRule => {
    const out: EntityRule = { nets: e.nets, notNets: e.notNets, ports: e.ports, notPorts: e.notPorts };
    if (e.selector !== undefined) out.selector = e.selector;
    if (e.notSelector !== undefined) out.notSelector = e.notSelector;
    if (e.namespaceSelector !== undefined) out.namespaceSelector = e.namespaceSelector;
    if (e.serviceAccounts) {
      out.serviceAccounts = { names: e.serviceAccounts.names };
      if (e.serviceAccounts.selector !== undefined) out.serviceAccounts.selector = e.serviceAccounts.selector;
    }
    return out;
  });

const emptyEntityRule = (): EntityRule => ({ nets: [], notNets: [], ports: [], notPorts: [] });

const icmpSchema = z
  .object({
    type: checked((v) => checkInt(v, 0, 254)).optional(),
    code: checked((v) => checkInt(v, 0, 255)).optional(),
  })
  .superRefine((i, ctx) => {
    if (i.code !== undefined && i.type === undefined) {
      ctx.addIssue({ code: 'custom', message: 'an ICMP code needs an ICMP type', path: ['code'] });
    }
  })
  .transform((i) => ({
    ...(i.type !== undefined ? { type: i.type } : {}),
    ...(i.code !== undefined ? { code: i.code } : {}),
  }));

const ACTIONS: readonly Action[] = ['Allow', 'Deny', 'Log', 'Pass'];

export const ruleSchema = z
  .object({
    action: enumSchema(ACTIONS),
    protocol: checked(checkProtocol).optional(),
    notProtocol: checked(checkProtocol).optional(),
    ipVersion: checked((v) => {
      if (v !== 4 && v !== 6) throw new FieldError('must be 4 or 6');
      return v;
    }).optional(),
    icmp: icmpSchema.optional(),
    notICMP: icmpSchema.optional(),
    source: entityRuleSchema.optional(),
    destination: entityRuleSchema.optional(),
    http: z.unknown().optional(),
    // A rule's own annotations: documentation only.
    metadata: z.unknown().optional(),
  })
  .superRefine(refuseUnsupported({ http: 'HTTP match needs an application-layer proxy' }))
  .superRefine(checkRulePorts)
  .superRefine(checkRuleIcmp)
  .transform((r): Rule => {
    const out: Rule = {
      action: r.action,
      source: r.source ?? emptyEntityRule(),
      destination: r.destination ?? emptyEntityRule(),
    };
    if (r.protocol !== undefined) out.protocol = r.protocol;
    if (r.notProtocol !== undefined) out.notProtocol = r.notProtocol;
    if (r.ipVersion !== undefined) out.ipVersion = r.ipVersion;
    if (r.icmp !== undefined) out.icmp = r.icmp;
    if (r.notICMP !== undefined) out.notICMP = r.notICMP;
    return out;
  });

type RawRule = { protocol?: string; source?: EntityRule; destination?: EntityRule };

/**
 * Calico's rule: ports need a protocol that has ports (TCP, UDP, SCTP, UDPLite). Without any
 * protocol, named ports are allowed (they match whatever protocol the named port has), numeric
 * ports are not.
 */
function checkRulePorts(r: RawRule, ctx: z.RefinementCtx): void {
  for (const side of ['source', 'destination'] as const) {
    for (const field of ['ports', 'notPorts'] as const) {
      const ports = r[side]?.[field] ?? [];
      if (ports.length === 0) continue;
      if (r.protocol !== undefined && !protocolHasPorts(r.protocol)) {
        ctx.addIssue({
          code: 'custom',
          message: `ports need protocol TCP, UDP, SCTP or UDPLite (protocol is ${r.protocol})`,
          path: [side, field],
        });
        continue;
      }
      const numeric = ports.findIndex((p) => p.kind === 'num');
      if (r.protocol === undefined && numeric >= 0) {
        ctx.addIssue({
          code: 'custom',
          message: 'a numeric port or range needs protocol TCP, UDP, SCTP or UDPLite (no protocol given)',
          path: [side, field, numeric],
        });
      }
    }
  }
}

function checkRuleIcmp(r: RawRule & { icmp?: unknown; notICMP?: unknown }, ctx: z.RefinementCtx): void {
  for (const field of ['icmp', 'notICMP'] as const) {
    if (r[field] !== undefined && (r.protocol === undefined || !protocolIsIcmp(r.protocol))) {
      ctx.addIssue({
        code: 'custom',
        message: `ICMP match needs protocol ICMP or ICMPv6 (protocol is ${r.protocol ?? 'not set'})`,
        path: [field],
      });
    }
  }
}

const policyTypeSchema = enumSchema(['Ingress', 'Egress'] as const);

export const policySpecSchema = z
  .object({
    tier: checked((v) => checkName('label', v)).default('default'),
    order: checked((v) => {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new FieldError('expected a number');
      return v;
    }).optional(),
    selector: checked(requireString).default('all()'),
    types: z.array(policyTypeSchema).optional(),
    ingress: z.array(ruleSchema).default([]),
    egress: z.array(ruleSchema).default([]),
    namespaceSelector: z.unknown().optional(),
    serviceAccountSelector: z.unknown().optional(),
    applyOnForward: z.boolean().optional(),
    preDNAT: z.boolean().optional(),
    doNotTrack: z.boolean().optional(),
    performanceHints: z.unknown().optional(),
  })
  .superRefine(
    refuseUnsupported({
      namespaceSelector:
        'policy-level namespaceSelector; fold it into selector (projectcalico.org/namespace)',
      serviceAccountSelector: 'policy-level serviceAccountSelector; fold it into selector',
    }),
  )
  .superRefine((s, ctx) => {
    // Calico's validator: both kinds of host-endpoint policy also apply to forwarded traffic.
    for (const f of ['preDNAT', 'doNotTrack'] as const)
      if (s[f] && !s.applyOnForward)
        ctx.addIssue({ code: 'custom', message: `${f} needs applyOnForward: true`, path: [f] });
    if (s.preDNAT && s.doNotTrack)
      ctx.addIssue({
        code: 'custom',
        message: 'preDNAT and doNotTrack cannot both be set',
        path: ['preDNAT'],
      });
    if (s.preDNAT && (s.egress.length > 0 || s.types?.includes('Egress')))
      ctx.addIssue({ code: 'custom', message: 'a preDNAT policy has ingress rules only', path: ['egress'] });
    const seen = new Set<string>();
    s.types?.forEach((t, i) => {
      if (seen.has(t)) ctx.addIssue({ code: 'custom', message: `${t} listed twice`, path: ['types', i] });
      seen.add(t);
    });
  })
  .transform(
    (s): PolicySpec => ({
      tier: s.tier,
      ...(s.order !== undefined ? { order: s.order } : {}),
      selector: s.selector,
      types: policyTypes(s.types, s.ingress.length, s.egress.length),
      ingress: s.ingress,
      egress: s.egress,
      ...(s.applyOnForward ? { applyOnForward: true } : {}),
      ...(s.preDNAT ? { preDNAT: true } : {}),
      ...(s.doNotTrack ? { doNotTrack: true } : {}),
    }),
  );

/**
 * Calico's default when `types` is absent or empty: Ingress when there are no egress rules (even
 * with no rules at all), Egress when there are only egress rules, both when both are present.
 */
export function policyTypes(
  types: readonly string[] | undefined,
  ingressRules: number,
  egressRules: number,
): PolicySpec['types'] {
  if (types && types.length > 0)
    return { ingress: types.includes('Ingress'), egress: types.includes('Egress') };
  if (egressRules === 0) return { ingress: true, egress: false };
  if (ingressRules === 0) return { ingress: false, egress: true };
  return { ingress: true, egress: true };
}
