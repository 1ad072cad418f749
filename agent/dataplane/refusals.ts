// What the kernel refused, by the name an operator knows (the policy, the endpoint, the ipset), for
// the log, the agent's metrics, its /status and `fedmesh status --agent`. A refused object keeps its
// last good version in the kernel; everything else is applied.
import { logger } from '../../lib/log.ts';

const log = logger('dataplane');

export interface Refusal {
  /** filter, nat, or ipset. */
  table: string;
  /** The kernel object refused: a chain or an ipset name. */
  object: string;
  /** The policy it belongs to (`namespace/name` or `name`), when it belongs to one. */
  policy?: string;
  /** The endpoint it belongs to (its feed key), when it belongs to one. */
  endpoint?: string;
  reason: string;
}

/** The current refusals of one manager; logs at warn when they change, not on every pass. */
export class RefusalLog {
  private current: Refusal[] = [];
  // Nothing refused at start: the all-clear is logged only after a refusal.
  private shown = '[]';

  /** `what`: one object as the warning names it ("a policy"); `plural`: for the all-clear. */
  constructor(
    private readonly what: string,
    private readonly plural: string,
  ) {}

  get list(): readonly Refusal[] {
    return this.current;
  }

  set(refusals: Refusal[]): void {
    this.current = refusals;
    const text = JSON.stringify(refusals.map((r) => [r.object, r.reason]));
    if (text === this.shown) return;
    this.shown = text;
    for (const r of refusals)
      log.warn(r, `the kernel refused ${this.what}; its last good version stays, everything else is applied`);
    if (refusals.length === 0) log.info(`the kernel accepts all ${this.plural} again`);
  }
}
