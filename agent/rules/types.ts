// The renderer's output, in the iptables driver's vocabulary (structurally native/iptables.ts's
// IptRule/IptChain/IptHook), kept here so the pure renderer has no dependency on the driver.
/** Never changed once made: the driver knows an unchanged chain by its rules' identity. */
export interface Rule {
  /** Match part in iptables-restore syntax, e.g. `-i cali+ -m set --match-set X src`. */
  readonly match: string;
  /** Target part, e.g. `-j ACCEPT`, `-g cali-tw-cali123`. */
  readonly action: string;
  /** Human-readable reason, rendered as a second comment. */
  readonly comment?: string;
}

export interface Chain {
  name: string;
  rules: Rule[];
}

/** One of our rules at the top of a built-in chain. */
export interface Hook {
  chain: string;
  rule: Rule;
}

export interface Table {
  chains: Chain[];
  hooks: Hook[];
}
