// iptables through iptables-save / iptables-restore, on the nf_tables or the legacy backend.
//
// Identity is the rule hash, never the rule text: every rule we write carries
// `-m comment --comment "cali:<hash>"`, and the nft backend re-orders and normalises the rest of
// the rule when it prints it back (`-s` moves before `-m comment`, `--dport` gains `-m tcp`, ...).
// The hash is chained (Felix's scheme): it covers the chain name, the rule's position, the hash of
// the rule before it and the rule's own text, so comparing two hash lists finds the first rule
// that differs and everything after it.
//
// Ownership: chains named cali-* are ours in full; in the built-in chains only the rules carrying a
// cali: comment are ours. Nothing else is ever replaced, deleted or flushed.
//
// One sync = one `iptables-save -t TABLE`, a pure diff, one `iptables-restore --noflush --wait`.
// The restore is a transaction: it lands completely or not at all.
import { createHash } from 'node:crypto';
import { bytesDigest } from '../lib/hash.ts';
import { logger } from '../lib/log.ts';
import { CommandError, run } from './exec.ts';
import { NftMonitor, type TableWatch } from './nft-monitor.ts';
import { RestoreSession } from './restore-session.ts';

const log = logger('iptables');

export type IptablesBackend = 'nft' | 'legacy';
export type Table = 'filter' | 'nat' | 'mangle' | 'raw';

/**
 * One rule; `match` and `action` in iptables-restore syntax, e.g. '-m conntrack --ctstate INVALID',
 * '-j DROP'. Never changed once made: `ruleHashes` and `targetOf` know a rule by its identity.
 */
export interface IptRule {
  readonly match: string;
  readonly action: string;
  /** A human comment, written as a second `-m comment` after the cali:<hash> one. */
  readonly comment?: string;
}

/** A chain we own: name starts with 'cali-', at most 28 characters. */
export interface IptChain {
  name: string;
  rules: IptRule[];
}

/** A rule of ours in a built-in chain (usually a jump into a cali- chain). */
export interface IptHook {
  chain: string;
  rule: IptRule;
}

export interface TableState {
  chains: IptChain[];
  /** In order: per built-in chain, these rules sit at the top of that chain, in this order. */
  hooks: IptHook[];
}

export interface ParsedRule {
  /** 1-based position in its chain, counting every rule (ours and foreign). */
  pos: number;
  /** The cali:<hash> tag, if the rule carries one. */
  hash?: string;
  /** The rule as iptables-save printed it, without the leading `-A CHAIN `. */
  spec: string;
}

export interface ParsedChain {
  name: string;
  rules: ParsedRule[];
}

export interface ParsedBuiltin {
  name: string;
  policy: string;
  /** Number of rules in the chain, ours and foreign. */
  length: number;
  /** Only the rules carrying a cali: tag. */
  ours: ParsedRule[];
}

export interface ParsedTable {
  table: string | undefined;
  /** Every cali-* chain with all its rules. */
  chains: Map<string, ParsedChain>;
  /** Every built-in chain (those with a policy) with the rules of ours in it. */
  builtins: Map<string, ParsedBuiltin>;
  /** Jump targets of cali-* chains: chain -> the chains it jumps/goes to. */
  jumps: Map<string, Set<string>>;
  /** Targets jumped to by rules that are not ours (foreign chains, untagged rules in built-ins). */
  foreignTargets: Set<string>;
}

export const BUILTIN_CHAINS: Readonly<Record<Table, readonly string[]>> = {
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  mangle: ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'],
  raw: ['PREROUTING', 'OUTPUT'],
};

export const CHAIN_PREFIX = 'cali-';
export const MAX_CHAIN_NAME = 28;
const HASH_LEN = 16;
/** xt_comment holds 256 bytes including the NUL. */
const MAX_COMMENT = 255;

// ---------------------------------------------------------------------------------------------
// Hashes and rendering.

const LOOSE_SPACE = /[^\S ]| {2}/;

/** One space between words. Most rendered text is already so: test before rewriting (a cold start squashes 25,000 rules twice). */
function squash(s: string): string {
  const t = s.trim();
  return LOOSE_SPACE.test(t) ? t.replace(/\s+/g, ' ') : t;
}

/**
 * The hashes of the chains last hashed, by chain name, with the rules they were made from: a pass
 * re-renders the whole table, and SHA-224 over 25,000 unchanged rules twice per change was most
 * of a one-change write. The renderer hands out the same rule objects for what did not change, so
 * most chains are recognised by their rules' identity, without comparing (or building) any text.
 */
const hashMemo = new Map<string, { rules: readonly IptRule[]; hashes: string[] }>();
const HASH_MEMO_MAX = 200_000;

/** Felix-style chained rule hashes: 16 chars of base64url(SHA-224). */
export function ruleHashes(chain: string, rules: readonly IptRule[]): string[] {
  const memo = hashMemo.get(chain);
  if (memo !== undefined && sameRules(memo.rules, rules)) return memo.hashes;
  const hashes = computeHashes(chain, rules);
  if (hashMemo.size >= HASH_MEMO_MAX) hashMemo.clear();
  // A copy: callers extend the renderer's fresh arrays.
  hashMemo.set(chain, { rules: rules.slice(), hashes });
  return hashes;
}

/** The hashes made afresh (what `ruleHashes` gives, without its memo). */
export function computeHashes(chain: string, rules: readonly IptRule[]): string[] {
  let prev = bytesDigest('sha224', Buffer.from(chain));
  return rules.map((rule, pos) => {
    // sha224(previous digest ‖ the rule's text): the two go into one scratch buffer and one
    // one-shot digest, not a Hash object per rule (25,000 at a cold start).
    const text = `\0${pos}\0${squash(rule.match)}\0${squash(rule.action)}\0${squash(rule.comment ?? '')}`;
    const need = prev.length + Buffer.byteLength(text);
    if (hashScratch.length < need) hashScratch = Buffer.allocUnsafe(Math.max(need, 2 * hashScratch.length));
    prev.copy(hashScratch, 0);
    hashScratch.write(text, prev.length, 'utf8');
    prev = bytesDigest('sha224', hashScratch.subarray(0, need));
    return prev.toString('base64url').slice(0, HASH_LEN);
  });
}

/** computeHashes' input to one digest, reused (it grows to the longest rule seen). */
let hashScratch = Buffer.allocUnsafe(4096);

/** A human comment made safe for iptables-restore's quoting and xt_comment's size. */
function sanitiseComment(c: string): string {
  return squash(c.replace(/["\\\n\r]/g, "'")).slice(0, MAX_COMMENT);
}

/** The rule spec (what follows `-A CHAIN`) as we write it. */
export function renderRuleSpec(rule: IptRule, hash: string): string {
  const parts = [`-m comment --comment "cali:${hash}"`];
  if (rule.comment !== undefined && rule.comment.trim() !== '') {
    parts.push(`-m comment --comment "${sanitiseComment(rule.comment)}"`);
  }
  if (rule.match.trim() !== '') parts.push(squash(rule.match));
  parts.push(squash(rule.action));
  return parts.join(' ');
}

// ---------------------------------------------------------------------------------------------
// Parsing iptables-save.

/** Split a save line into words, honouring iptables-save's double quotes and backslash escapes. */
export function tokenize(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (quoted) {
      if (c === '\\' && i + 1 < line.length) cur += line[++i];
      else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') {
      quoted = true;
      inWord = true;
    } else if (c === ' ' || c === '\t') {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

// A rule is ours when one of its comments is exactly cali:<hash> (quoted or not, as the backends
// print it). Quoted strings are blanked before looking for the jump target, so that a comment
// containing " -j X" cannot fool us; this is the hot path of a resync (10k rules: no tokenising).
const HASH_RE = new RegExp(
  `--comment (?:"cali:([A-Za-z0-9_-]{${HASH_LEN}})"|cali:([A-Za-z0-9_-]{${HASH_LEN}}))(?=\\s|$)`,
);
const QUOTED = /"(?:[^"\\]|\\.)*"/g;
const JUMP = /(?:^|\s)(?:-j|-g|--jump|--goto)\s+([^\s"]+)/g;

function ruleFacts(spec: string): { hash?: string; target?: string } {
  const h = HASH_RE.exec(spec);
  const hash = h?.[1] ?? h?.[2];
  let target: string | undefined;
  for (const m of spec.replace(QUOTED, '""').matchAll(JUMP)) target = m[1];
  return hash === undefined ? { target } : { hash, target };
}

/** The `*table` ... `COMMIT` sections of a save, by table name. */
export function splitSave(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const starts: number[] = text.startsWith('*') ? [0] : [];
  for (let i = text.indexOf('\n*'); i >= 0; i = text.indexOf('\n*', i + 1)) starts.push(i + 1);
  starts.forEach((start, k) => {
    const section = text.slice(start, starts[k + 1]);
    const nl = section.indexOf('\n');
    out.set(section.slice(1, nl < 0 ? undefined : nl).trim(), section);
  });
  return out;
}

/**
 * A digest of a table's save that ignores what changes without anyone touching the rules: the
 * comment lines (a timestamp) and the built-in chains' packet counters.
 */
export function saveDigest(section: string): string {
  return createHash('sha1')
    .update(section.replace(/^#.*$|\[\d+:\d+\]/gm, ''))
    .digest('base64');
}

/** Parse the output of `iptables-save -t TABLE` (the first table in the text). */
export function parseSave(text: string): ParsedTable {
  const parsed: ParsedTable = {
    table: undefined,
    chains: new Map(),
    builtins: new Map(),
    jumps: new Map(),
    foreignTargets: new Set(),
  };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      if (parsed.table !== undefined) break;
      parsed.table = line.slice(1);
    } else if (line.startsWith(':')) {
      const [name = '', policy = '-'] = line.slice(1).split(/\s+/);
      if (policy !== '-') parsed.builtins.set(name, { name, policy, length: 0, ours: [] });
      else if (name.startsWith(CHAIN_PREFIX)) parsed.chains.set(name, { name, rules: [] });
    } else if (line.startsWith('-A ')) {
      addRule(parsed, line);
    }
  }
  return parsed;
}

function addRule(parsed: ParsedTable, line: string): void {
  const chainEnd = line.indexOf(' ', 3);
  const chain = chainEnd < 0 ? line.slice(3) : line.slice(3, chainEnd);
  const spec = chainEnd < 0 ? '' : line.slice(chainEnd + 1);
  const { hash, target } = ruleFacts(spec);
  const own = parsed.chains.get(chain);
  if (own !== undefined) {
    own.rules.push({ pos: own.rules.length + 1, spec, ...(hash ? { hash } : {}) });
    if (target !== undefined) {
      const set = parsed.jumps.get(chain) ?? new Set<string>();
      set.add(target);
      parsed.jumps.set(chain, set);
    }
    return;
  }
  const builtin = parsed.builtins.get(chain);
  if (builtin !== undefined) {
    builtin.length++;
    if (hash !== undefined) {
      builtin.ours.push({ pos: builtin.length, hash, spec });
      return;
    }
  }
  if (target !== undefined) parsed.foreignTargets.add(target);
}

// ---------------------------------------------------------------------------------------------
// The pure diff.

export interface RestorePlanStats {
  chainsCreated: number;
  chainsUpdated: number;
  chainsDeleted: number;
  /** Stale cali- chains that something we do not own still jumps to; left in place. */
  chainsKept: string[];
  rulesWritten: number;
  rulesDeleted: number;
  hooksInserted: number;
  hooksDeleted: number;
}

export interface RestorePlan {
  /** The restore text, or undefined when the kernel already matches. */
  script: string | undefined;
  /** Number of command lines (excluding *table and COMMIT). */
  lines: number;
  /** Per command line (script line n is origins[n - 2]): the owned chain it writes, if any. */
  origins: (string | undefined)[];
  stats: RestorePlanStats;
}

export interface PlanOptions {
  /**
   * Chains left exactly as the kernel holds them (their last good version): not rewritten, not
   * deleted. How a refused chain stays out of a restore. One the kernel does not have yet becomes a
   * placeholder that drops (fail closed), so that the chains jumping to it still load: left absent,
   * each of them would be refused in turn, up to the hooks, and the whole table would freeze.
   */
  keep?: ReadonlySet<string>;
  /**
   * Chains jumped to by chains left out of `desired` (an incremental plan: chains unchanged since
   * the last write): a stale chain among them must stay.
   */
  pinned?: ReadonlySet<string>;
}

export const PLACEHOLDER_COMMENT = 'refused by the kernel, never loaded: dropping until it loads';

function placeholder(name: string): IptChain {
  return { name, rules: [{ match: '', action: '-j DROP', comment: PLACEHOLDER_COMMENT }] };
}

function validate(table: Table, desired: TableState): void {
  const seen = new Set<string>();
  for (const c of desired.chains) {
    if (!c.name.startsWith(CHAIN_PREFIX))
      throw new Error(`chain ${c.name}: our chains are named ${CHAIN_PREFIX}*`);
    if (c.name.length > MAX_CHAIN_NAME)
      throw new Error(`chain ${c.name}: longer than ${MAX_CHAIN_NAME} characters`);
    if (seen.has(c.name)) throw new Error(`chain ${c.name} is listed twice`);
    seen.add(c.name);
  }
  for (const h of desired.hooks) {
    if (!BUILTIN_CHAINS[table].includes(h.chain)) {
      throw new Error(`hook into ${h.chain}: not a built-in chain of the ${table} table`);
    }
  }
}

/** Each rule's target once found (rules are never changed: the renderer shares them between passes). */
const targets = new WeakMap<IptRule, string | null>();

/** The chain a desired rule jumps to. */
function targetOf(rule: IptRule): string | undefined {
  let t = targets.get(rule);
  if (t === undefined) {
    t = ruleFacts(rule.action).target ?? ruleFacts(rule.match).target ?? null;
    targets.set(rule, t);
  }
  return t ?? undefined;
}

/** A chain rewriting at least this many rules, most of it, is flushed and appended instead. */
const FLUSH_AT = 32;

/** Rewrite one owned chain rule by rule: keep the matching prefix (and its counters), -R the rest. */
function chainOps(
  chain: IptChain,
  actual: ParsedChain | undefined,
  out: string[],
  stats: RestorePlanStats,
): void {
  const hashes = ruleHashes(chain.name, chain.rules);
  const have = actual?.rules ?? [];
  let same = 0;
  while (same < hashes.length && same < have.length && have[same]?.hash === hashes[same]) same++;
  if (same === hashes.length && same === have.length) return;
  if (actual === undefined) stats.chainsCreated++;
  else stats.chainsUpdated++;
  if (have.length > 0 && hashes.length - same >= FLUSH_AT && same * 2 < hashes.length) {
    // Most of a long chain changes (an endpoint's policy list): flush and append. On nft a -R
    // makes the tool fetch the chain's rules first, ~20% slower for 400 rules; the few
    // counters of the kept prefix are what it costs.
    out.push(`-F ${chain.name}`);
    stats.rulesDeleted += have.length;
    chain.rules.forEach((rule, i) => {
      out.push(`-A ${chain.name} ${renderRuleSpec(rule, hashes[i] as string)}`);
      stats.rulesWritten++;
    });
    return;
  }
  chain.rules.forEach((rule, i) => {
    if (i < same) return;
    const spec = renderRuleSpec(rule, hashes[i] as string);
    out.push(i < have.length ? `-R ${chain.name} ${i + 1} ${spec}` : `-A ${chain.name} ${spec}`);
    stats.rulesWritten++;
  });
  // Trailing rules no longer wanted, from the bottom so the positions stay valid.
  for (let pos = have.length; pos > hashes.length; pos--) {
    out.push(`-D ${chain.name} ${pos}`);
    stats.rulesDeleted++;
  }
}

/** Put our rules at the top of one built-in chain, exactly `hooks` in order; foreign rules untouched. */
function hookOps(
  chain: string,
  hooks: readonly IptRule[],
  actual: ParsedBuiltin | undefined,
  deletes: string[],
  inserts: string[],
  stats: RestorePlanStats,
): void {
  const hashes = ruleHashes(chain, hooks);
  const ours = actual?.ours ?? [];
  const atPos = new Map(ours.map((r) => [r.pos, r]));
  let keep = 0;
  while (keep < hashes.length && atPos.get(keep + 1)?.hash === hashes[keep]) keep++;
  let stale = ours.filter((r) => r.pos > keep);
  // -D by text removes the first match: if a stale copy duplicates a kept rule, deleting it would
  // hit the kept one instead. Start over from an empty top in that (rare) case.
  const kept = new Set(hashes.slice(0, keep));
  if (stale.some((r) => r.hash !== undefined && kept.has(r.hash))) {
    keep = 0;
    stale = ours;
  }
  for (const r of stale) {
    // By the saved text, never by position: a text carrying our hash cannot match a foreign rule,
    // even if someone inserted rules since we read the table.
    deletes.push(`-D ${chain} ${r.spec}`);
    stats.hooksDeleted++;
  }
  for (let i = keep; i < hashes.length; i++) {
    inserts.push(`-I ${chain} ${i + 1} ${renderRuleSpec(hooks[i] as IptRule, hashes[i] as string)}`);
    stats.hooksInserted++;
  }
}

/**
 * Stale owned chains that can go: nothing we keep and nothing foreign jumps to them. A stale chain
 * we must keep also keeps what it jumps to (we do not flush it either).
 */
function deletableChains(
  desired: TableState,
  actual: ParsedTable,
  stats: RestorePlanStats,
  keep: ReadonlySet<string>,
  alsoPinned: ReadonlySet<string> | undefined,
): string[] {
  const wanted = new Set([...desired.chains.map((c) => c.name), ...keep]);
  const stale = new Set([...actual.chains.keys()].filter((n) => !wanted.has(n)));
  if (stale.size === 0) return [];
  const pinned = new Set<string>(actual.foreignTargets);
  for (const t of alsoPinned ?? []) pinned.add(t);
  for (const c of desired.chains) for (const r of c.rules) pinned.add(targetOf(r) ?? '');
  for (const h of desired.hooks) pinned.add(targetOf(h.rule) ?? '');
  const kept = new Set([...stale].filter((n) => pinned.has(n)));
  for (let grew = true; grew; ) {
    grew = false;
    for (const k of [...kept]) {
      for (const t of actual.jumps.get(k) ?? []) {
        if (stale.has(t) && !kept.has(t)) {
          kept.add(t);
          grew = true;
        }
      }
    }
  }
  stats.chainsKept = [...kept];
  return [...stale].filter((n) => !kept.has(n));
}

function emptyPlanStats(): RestorePlanStats {
  return {
    chainsCreated: 0,
    chainsUpdated: 0,
    chainsDeleted: 0,
    chainsKept: [],
    rulesWritten: 0,
    rulesDeleted: 0,
    hooksInserted: 0,
    hooksDeleted: 0,
  };
}

/** The full plan: restore text plus what it does. */
export function planRestore(
  table: Table,
  desired: TableState,
  actual: ParsedTable,
  opts: PlanOptions = {},
): RestorePlan {
  validate(table, desired);
  const keep = opts.keep ?? new Set<string>();
  const stats = emptyPlanStats();
  // Order matters inside the transaction: declare new chains before anything jumps to them; drop
  // old hooks and rewrite chains before flushing and deleting the chains they jumped to.
  const declare: string[] = [];
  const chainLines: string[] = [];
  const chainOrigins: string[] = [];
  for (const wanted of desired.chains) {
    const have = actual.chains.get(wanted.name);
    if (keep.has(wanted.name) && have !== undefined) continue;
    const chain = keep.has(wanted.name) ? placeholder(wanted.name) : wanted;
    if (have === undefined) declare.push(`:${chain.name} - [0:0]`);
    const before = chainLines.length;
    chainOps(chain, have, chainLines, stats);
    for (let i = before; i < chainLines.length; i++) chainOrigins.push(chain.name);
  }
  const hookDeletes: string[] = [];
  const hookInserts: string[] = [];
  const hookChains = new Set([...desired.hooks.map((h) => h.chain), ...actual.builtins.keys()]);
  for (const chain of hookChains) {
    const rules = desired.hooks.filter((h) => h.chain === chain).map((h) => h.rule);
    hookOps(chain, rules, actual.builtins.get(chain), hookDeletes, hookInserts, stats);
  }
  const doomed = deletableChains(desired, actual, stats, keep, opts.pinned);
  stats.chainsDeleted = doomed.length;
  const origins = [
    ...declare.map((l) => l.slice(1, l.indexOf(' '))),
    ...chainOrigins,
    ...hookDeletes.map(() => undefined),
    ...hookInserts.map(() => undefined),
    ...doomed,
    ...doomed,
  ];
  const body = [
    ...declare,
    ...chainLines,
    ...hookDeletes,
    ...hookInserts,
    ...doomed.map((n) => `-F ${n}`),
    ...doomed.map((n) => `-X ${n}`),
  ];
  if (body.length === 0) return { script: undefined, lines: 0, origins: [], stats };
  return { script: `*${table}\n${body.join('\n')}\nCOMMIT\n`, lines: body.length, origins, stats };
}

/** A stage: the chains of a table the kernel does not hold yet, written alone (see IptablesDriver.stageTable). */
export interface StagePlan {
  script: string;
  /** Chains the script creates. */
  chains: number;
  /** Rules it appends. */
  rules: number;
  /** `known` with the staged chains in it: what the kernel holds once the script has landed. */
  after: ParsedTable;
}

/**
 * The chains of `desired` that `known` lacks, declared and filled, and nothing else: no hook, no
 * chain the kernel holds is touched. Nothing the kernel runs can reach a chain that only chains
 * new in the same stage jump to, so a stage changes no packet's fate until a later plan links it
 * in. Undefined when every desired chain exists already.
 */
export function planStage(table: Table, desired: TableState, known: ParsedTable): StagePlan | undefined {
  const fresh = desired.chains.filter((c) => !known.chains.has(c.name));
  if (fresh.length === 0) return undefined;
  const staged: TableState = { chains: fresh, hooks: [] };
  validate(table, staged);
  const stats = emptyPlanStats();
  const lines = fresh.map((c) => `:${c.name} - [0:0]`);
  for (const c of fresh) chainOps(c, undefined, lines, stats);
  const none: ParsedTable = { ...known, chains: new Map(), jumps: new Map(), builtins: new Map() };
  const made = expectedAfter(staged, none, { script: undefined, lines: 0, origins: [], stats });
  const after: ParsedTable = {
    ...known,
    chains: new Map([...known.chains, ...made.chains]),
    jumps: new Map([...known.jumps, ...made.jumps]),
  };
  return {
    script: `*${table}\n${lines.join('\n')}\nCOMMIT\n`,
    chains: fresh.length,
    rules: stats.rulesWritten,
    after,
  };
}

/**
 * The table as the kernel holds it once `plan` (made from `desired` and `actual`, with no chain
 * kept back) has been applied: our chains exactly as desired, our hooks at the top of their
 * built-in chains above the foreign rules, stale chains that had to stay left as they were.
 */
export function expectedAfter(desired: TableState, actual: ParsedTable, plan: RestorePlan): ParsedTable {
  const chains = new Map<string, ParsedChain>();
  const jumps = new Map<string, Set<string>>();
  for (const name of plan.stats.chainsKept) {
    const c = actual.chains.get(name);
    if (c) chains.set(name, c);
    const j = actual.jumps.get(name);
    if (j) jumps.set(name, j);
  }
  for (const c of desired.chains) {
    const hashes = ruleHashes(c.name, c.rules);
    const targets = new Set<string>();
    chains.set(c.name, {
      name: c.name,
      rules: c.rules.map((rule, i) => {
        const t = targetOf(rule);
        if (t !== undefined) targets.add(t);
        // Only a built-in chain's specs are ever used (to delete by text): skip rendering these.
        return { pos: i + 1, hash: hashes[i] as string, spec: '' };
      }),
    });
    if (targets.size > 0) jumps.set(c.name, targets);
  }
  const builtins = new Map<string, ParsedBuiltin>();
  const names = new Set([...actual.builtins.keys(), ...desired.hooks.map((h) => h.chain)]);
  for (const name of names) {
    const have = actual.builtins.get(name);
    const rules = desired.hooks.filter((h) => h.chain === name).map((h) => h.rule);
    const hashes = ruleHashes(name, rules);
    const ours = rules.map((rule, i) => {
      const hash = hashes[i] as string;
      return { pos: i + 1, hash, spec: renderRuleSpec(rule, hash) };
    });
    const foreign = (have?.length ?? 0) - (have?.ours.length ?? 0);
    builtins.set(name, { name, policy: have?.policy ?? 'ACCEPT', length: foreign + ours.length, ours });
  }
  return { table: actual.table, chains, builtins, jumps, foreignTargets: actual.foreignTargets };
}

// ---------------------------------------------------------------------------------------------
// Incremental writes: a change is planned over the chains that changed since the last write.

/** The same rules in the same order: the same objects (mostly), or alike field by field. */
function sameRules(a: readonly IptRule[], b: readonly IptRule[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as IptRule;
    const y = b[i] as IptRule;
    // Policy chains come from the renderer's memo (the same rule objects): mostly one comparison.
    if (x !== y && (x.match !== y.match || x.action !== y.action || x.comment !== y.comment)) return false;
  }
  return true;
}

/** The part of a table a plan needs when the kernel holds exactly what `written` describes. */
export interface NarrowedTable {
  desired: TableState;
  actual: ParsedTable;
  /** Targets of the chains left out (unchanged): stale chains among them stay. */
  pinned: Set<string>;
}

/**
 * Narrow a sync to what changed: the chains whose rules differ from the last write, the chains
 * the kernel holds that are no longer wanted, and the hooks (a few rules, always planned). The plan
 * over the narrowed table is the plan over the whole one: an unchanged chain plans to nothing.
 */
export function narrowToChanges(desired: TableState, written: TableState, known: ParsedTable): NarrowedTable {
  const before = new Map<string, IptChain>();
  for (const c of written.chains) before.set(c.name, c);
  const wanted = new Set<string>();
  const changed: IptChain[] = [];
  for (const c of desired.chains) {
    wanted.add(c.name);
    const w = before.get(c.name);
    if (w === undefined || !known.chains.has(c.name) || !sameRules(w.rules, c.rules)) changed.push(c);
  }
  const changedNames = new Set(changed.map((c) => c.name));
  const chains = new Map<string, ParsedChain>();
  const jumps = new Map<string, Set<string>>();
  const unchanged: string[] = [];
  let stale = false;
  for (const [name, chain] of known.chains) {
    if (wanted.has(name) && !changedNames.has(name)) {
      unchanged.push(name);
      continue;
    }
    if (!wanted.has(name)) stale = true;
    chains.set(name, chain);
    const targets = known.jumps.get(name);
    if (targets !== undefined) jumps.set(name, targets);
  }
  // Only a stale chain can be kept by a jump: with none (most changes), the 20,000 jump targets of
  // the unchanged chains are not gathered.
  const pinned = new Set<string>();
  if (stale) for (const name of unchanged) for (const t of known.jumps.get(name) ?? []) pinned.add(t);
  return {
    desired: { chains: changed, hooks: desired.hooks },
    actual: { ...known, chains, jumps },
    pinned,
  };
}

/** `known` with a narrowed plan applied: the narrowed part replaced by what the plan left. */
export function mergeAfter(known: ParsedTable, narrowed: ParsedTable, after: ParsedTable): ParsedTable {
  const chains = new Map(known.chains);
  const jumps = new Map(known.jumps);
  for (const name of narrowed.chains.keys()) {
    chains.delete(name);
    jumps.delete(name);
  }
  for (const [name, c] of after.chains) chains.set(name, c);
  for (const [name, j] of after.jumps) jumps.set(name, j);
  return { ...known, chains, jumps, builtins: after.builtins };
}

/**
 * Whether the kernel's table (a fresh save) still holds our chains and hooks exactly as `known`
 * says: the same chains with the same rule hashes in order (an untagged rule is foreign), our hooks
 * at the same places. Only hashes are compared: no render, no rule text.
 */
export function sameOwned(known: ParsedTable, read: ParsedTable): boolean {
  if (known.chains.size !== read.chains.size) return false;
  for (const [name, want] of known.chains) {
    const have = read.chains.get(name);
    if (have === undefined || have.rules.length !== want.rules.length) return false;
    for (let i = 0; i < want.rules.length; i++) if (have.rules[i]?.hash !== want.rules[i]?.hash) return false;
  }
  const names = new Set([...known.builtins.keys(), ...read.builtins.keys()]);
  for (const name of names) {
    const want = known.builtins.get(name)?.ours ?? [];
    const have = read.builtins.get(name)?.ours ?? [];
    if (want.length !== have.length) return false;
    for (let i = 0; i < want.length; i++)
      if (have[i]?.hash !== want[i]?.hash || have[i]?.pos !== want[i]?.pos) return false;
  }
  return true;
}

/** The iptables-restore --noflush text that turns `actual` into `desired`; undefined if nothing to do. */
export function renderRestore(table: Table, desired: TableState, actual: ParsedTable): string | undefined {
  return planRestore(table, desired, actual).script;
}

// ---------------------------------------------------------------------------------------------
// The driver.

export interface IptStats extends RestorePlanStats {
  table: Table;
  /** Write commands run: 0 when the kernel already matched, else 1 (more when a restore was refused). */
  commands: number;
  lines: number;
  ms: number;
  /** Chains the kernel refused, kept at their last good version (absent if they never loaded). */
  refused: RefusedChain[];
}

// ---------------------------------------------------------------------------------------------
// Refusals: a restore the kernel refuses must not hold back every other chain of the table.

export interface RefusedChain {
  chain: string;
  /** The tool's complaint. */
  reason: string;
}

/**
 * The line a restore tool blames: `Error occurred at line: N` (parse errors, both backends),
 * `line N: RULE_APPEND failed` (nft, kernel errors at commit), `line N failed` (legacy, COMMIT).
 */
export function refusedLine(stderr: string): number | undefined {
  const m = /Error occurred at line: (\d+)/.exec(stderr) ?? /line (\d+)(?::| failed)/.exec(stderr);
  return m ? Number(m[1]) : undefined;
}

function refusalReason(stderr: string): string {
  const first = stderr
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l !== '' && !/^(Error occurred at line|Try `)/.test(l));
  return (first ?? 'refused').replace(/^iptables\S*( v[\d.]+)?( \([^)]*\))?: /, '').slice(0, 300);
}

type Attempt = (script: string) => Promise<{ exitCode: number; stderr: string }>;

/**
 * Apply what the kernel accepts. Each round applies the plan with the chains found so far kept as
 * the kernel holds them; the culprit of a refusal is the chain of the line the tool names, or,
 * when it names none a chain can be blamed for (a refusal at COMMIT), the one a bisection over the
 * plan's chains with `--test` finds. `failed` when no chain is to blame (the table fails whatever
 * is kept). A restore is a transaction: a refused round changes nothing.
 */
export async function applyAcceptedChains(
  plan: (keep: ReadonlySet<string>) => RestorePlan,
  apply: Attempt,
  probe: Attempt,
  order: readonly string[],
  maxRounds = 32,
): Promise<
  { plan: RestorePlan; refused: Map<string, string>; attempts: number } | { failed: string; attempts: number }
> {
  const refused = new Map<string, string>();
  let attempts = 0;
  for (let round = 0; round < maxRounds; round++) {
    const p = plan(new Set(refused.keys()));
    if (p.script === undefined) return { plan: p, refused, attempts };
    attempts++;
    const res = await apply(p.script);
    if (res.exitCode === 0) return { plan: p, refused, attempts };
    const line = refusedLine(res.stderr);
    let culprit = line === undefined ? undefined : p.origins[line - 2];
    if (culprit === undefined || refused.has(culprit)) culprit = jumperToMissing(p, res.stderr, refused);
    if (culprit === undefined) {
      const found = await bisect(p, refused, plan, probe, order);
      attempts += found.attempts;
      culprit = found.culprit;
    }
    if (culprit === undefined) return { failed: res.stderr, attempts };
    refused.set(culprit, refusalReason(res.stderr));
    if (round === maxRounds - 1) return { failed: res.stderr, attempts };
  }
  return { failed: 'too many refused chains', attempts };
}

/**
 * nft checks jump targets only at COMMIT (and `--test` never gets there): "Chain 'X' does not
 * exist", blamed on the COMMIT line. The culprit is the chain whose written rule jumps to X.
 */
function jumperToMissing(
  p: RestorePlan,
  stderr: string,
  refused: ReadonlyMap<string, string>,
): string | undefined {
  const missing = /Chain '([^']+)' does not exist/.exec(stderr)?.[1];
  if (missing === undefined) return undefined;
  const body = (p.script ?? '').split('\n').slice(1);
  const jump = new RegExp(
    `\\s(?:-j|-g|--jump|--goto)\\s+${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?:\\s|$)`,
  );
  for (const [i, line] of body.entries()) {
    const chain = p.origins[i];
    if (chain !== undefined && !refused.has(chain) && jump.test(line)) return chain;
  }
  return undefined;
}

/**
 * The chain to blame when the tool names no line: chains are ordered as rendered (a chain jumps
 * only to chains after it), so applying a suffix never misses a target. Find the longest suffix
 * the kernel accepts; the chain just before it is the culprit.
 */
async function bisect(
  failed: RestorePlan,
  refused: ReadonlyMap<string, string>,
  plan: (keep: ReadonlySet<string>) => RestorePlan,
  probe: Attempt,
  order: readonly string[],
): Promise<{ culprit: string | undefined; attempts: number }> {
  const written = new Set(failed.origins.filter((o): o is string => o !== undefined));
  const candidates = order.filter((c) => written.has(c));
  for (const c of written) if (!candidates.includes(c)) candidates.push(c);
  let attempts = 0;
  const passes = async (j: number) => {
    const p = plan(new Set([...refused.keys(), ...candidates.slice(0, j)]));
    if (p.script === undefined) return true;
    attempts++;
    return (await probe(p.script)).exitCode === 0;
  };
  // `--test` does not run the kernel's own checks (a jump loop passes it): if it cannot see the
  // refusal, it cannot find its culprit either. And a tool that refuses even an empty table (a
  // held lock) has nothing to do with any chain.
  if (await passes(0)) return { culprit: undefined, attempts };
  const header = failed.script?.split('\n', 1)[0] ?? '*filter';
  attempts++;
  if ((await probe(`${header}\nCOMMIT\n`)).exitCode !== 0) return { culprit: undefined, attempts };
  if (!(await passes(candidates.length))) return { culprit: undefined, attempts };
  let lo = 0;
  let hi = candidates.length;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (await passes(mid)) hi = mid;
    else lo = mid;
  }
  return { culprit: candidates[lo], attempts };
}

const TOOLS: Readonly<Record<IptablesBackend, { save: string; restore: string }>> = {
  nft: { save: 'iptables-nft-save', restore: 'iptables-nft-restore' },
  legacy: { save: 'iptables-legacy-save', restore: 'iptables-legacy-restore' },
};

/** Lines that show a Kubernetes or Calico-style agent has been using this backend. */
export function countAgentLines(saveText: string): number {
  let n = 0;
  for (const line of saveText.split('\n')) {
    if ((line.startsWith(':') || line.startsWith('-A ')) && /KUBE-|cali-|"?cali:/.test(line)) n++;
  }
  return n;
}

/** A sync planned ahead: valid while the table is still `full` after the write of `written`. */
interface PreparedSync {
  desired: TableState;
  full: ParsedTable;
  written: TableState | undefined;
  part: { desired: TableState; actual: ParsedTable; pinned: ReadonlySet<string> | undefined };
  plan: RestorePlan;
  after: ParsedTable;
}

export class IptablesDriver {
  readonly backend: IptablesBackend;
  /** On nft, `stageTable` loads a cold start's new chains while the ipsets fill; legacy does not stage. */
  get stagesBesideSets(): boolean {
    return this.backend === 'nft';
  }
  private readonly netns: string | undefined;
  /**
   * Each table as the kernel holds it as far as we know: after our last successful write (what it
   * left), or as last read. A change is planned against it without an iptables-save first (on nft,
   * a save of 25,000 rules costs more than the write) when the caller says so (`reuseLastWrite`).
   * Dropped on any failure or refusal; a caller re-reads on resync.
   */
  private readonly known = new Map<Table, ParsedTable>();
  /**
   * What the last fully accepted write of each table made of our chains and hooks, while `known`
   * is exactly what it left: a change is then planned over the chains that changed alone, and a
   * drift check compares hashes against `known`.
   */
  private readonly written = new Map<Table, TableState>();
  /** Tells whether anyone but us changed a table (nft: `nft monitor`); absent on legacy. */
  private readonly watch: TableWatch | undefined;
  /** The digest of the last save a drift check found holding `known` (ours unchanged). */
  private readonly quietSaves = new Map<Table, { known: ParsedTable; digest: string }>();

  /** On nft, the kept restore process writes go through first (see RestoreSession). */
  private readonly session: RestoreSession | undefined;

  /**
   * `watch`: on nft, `nft monitor` unless given (null: none, every drift check reads). `session`:
   * on nft, write through a kept `iptables-nft-restore` (default on).
   */
  constructor(opts: {
    backend: IptablesBackend;
    netns?: string;
    watch?: TableWatch | null;
    session?: boolean;
  }) {
    this.backend = opts.backend;
    this.netns = opts.netns;
    this.session =
      opts.backend === 'nft' && opts.session !== false
        ? new RestoreSession(TOOLS.nft.restore, ['--noflush'], opts.netns)
        : undefined;
    this.watch =
      opts.watch === null
        ? undefined
        : (opts.watch ?? (opts.backend === 'nft' ? new NftMonitor({ netns: opts.netns }) : undefined));
  }

  /** Another process changed one of these tables (nft): a drift check now finds it sooner. */
  onForeignChange(fn: (tables: Table[]) => void): void {
    this.watch?.onForeignChange((tables) => fn(tables as Table[]));
  }

  /** The kept restore process, while one runs. */
  get sessionPid(): number | undefined {
    return this.session?.pid;
  }

  /** Stop the watch (its `nft monitor` process) and the kept restore process. */
  close(): void {
    this.watch?.stop();
    this.session?.end();
  }

  /**
   * Like kubernetes-sigs/iptables-wrappers: the backend that already holds KUBE-* or cali-* state
   * (more lines wins), so we never split a node's rules over two backends; with no such state, the
   * backend the `iptables` on PATH uses.
   */
  static async detectBackend(netns?: string): Promise<IptablesBackend> {
    const count = async (b: IptablesBackend) => {
      const res = await run(TOOLS[b].save, [], { netns, allowFailure: true });
      return res.exitCode === 0 ? countAgentLines(res.stdout) : 0;
    };
    const [legacy, nft] = await Promise.all([count('legacy'), count('nft')]);
    if (legacy > nft) return 'legacy';
    if (nft > legacy) return 'nft';
    const version = await run('iptables', ['--version'], { netns, allowFailure: true });
    const backend: IptablesBackend = /legacy/.test(version.stdout) ? 'legacy' : 'nft';
    log.debug({ netns, legacy, nft, backend }, 'iptables backend detected');
    return backend;
  }

  /**
   * The tables in which someone changed what our last write left: a chain of ours with a rule
   * added, changed or deleted, a hook of ours moved or deleted. Tables a watch saw nobody else
   * touch are not read; the rest in one save, compared by rule hashes with what our write left (no
   * render, no rule text). A drifted table's save is kept: its repair plans against it.
   */
  async driftedTables(tables: readonly Table[]): Promise<Table[]> {
    const ours = tables.filter((t) => this.known.has(t) && this.written.has(t));
    if (ours.length === 0) return [];
    // Started with the first check, not before: a cold start's 25,000 rule events cost it nothing.
    this.watch?.start();
    const unsure = ours.filter((t) => !this.watch?.quiet(t));
    if (unsure.length === 0) return [];
    const before = new Map(unsure.map((t) => [t, this.known.get(t)]));
    const texts = await this.readTexts(unsure);
    const drifted: Table[] = [];
    for (const t of unsure) {
      const known = before.get(t);
      if (known === undefined || this.known.get(t) !== known) continue; // a write landed meanwhile
      const text = texts.get(t) ?? `*${t}\nCOMMIT\n`;
      // Without events (legacy) every check reads a save; one the same as the last that matched
      // our write is not parsed again (25,000 rules: the parse is most of a check's CPU).
      const digest = saveDigest(text);
      const quiet = this.quietSaves.get(t);
      if (quiet?.known === known && quiet.digest === digest) continue;
      const read = parseSave(text);
      if (sameOwned(known, read)) {
        this.quietSaves.set(t, { known, digest });
        continue;
      }
      this.known.set(t, read);
      this.written.delete(t);
      drifted.push(t);
    }
    return drifted;
  }

  /** One table with `-t`, several with one save of all (on nft each lists the ruleset anyway). */
  private async readSome(tables: readonly Table[]): Promise<Map<Table, ParsedTable>> {
    const texts = await this.readTexts(tables);
    return new Map(tables.map((t) => [t, parseSave(texts.get(t) ?? `*${t}\nCOMMIT\n`)]));
  }

  /** The save text of each table (absent: the kernel has no such table loaded). */
  private async readTexts(tables: readonly Table[]): Promise<Map<Table, string>> {
    for (const t of tables) this.watch?.reading(t);
    const args = tables.length === 1 ? ['-t', tables[0] as Table] : [];
    const { stdout } = await run(TOOLS[this.backend].save, args, { netns: this.netns });
    return splitSave(stdout) as Map<Table, string>;
  }

  async read(table: Table): Promise<ParsedTable> {
    this.watch?.reading(table);
    const { stdout } = await run(TOOLS[this.backend].save, ['-t', table], { netns: this.netns });
    return parseSave(stdout);
  }

  /**
   * Read these tables with one save of all tables (one process; on nft one listing of the ruleset)
   * into what the next syncs plan against. A cold start reads before it writes: the tables it
   * then fills are not listed again.
   */
  async readTables(tables: readonly Table[]): Promise<void> {
    const now = await this.readSome(tables);
    for (const [t, parsed] of now) {
      this.known.set(t, parsed);
      this.written.delete(t);
    }
  }

  /**
   * A plan made ahead of its write (prepareTable), used by the syncTable of the same desired state
   * while the table is still as it was planned against (the same `known`, the same last write).
   */
  private readonly prepared = new Map<Table, PreparedSync>();

  /**
   * Plan the sync of `desired` now, so that a `syncTable` of the same object soon after only
   * writes: a pass plans the filter table (25,000 rules at scale: hashes, rule text, the restore
   * script) while the ipset restore it must wait for runs. Only against what the last write or
   * read left (`reuseLastWrite`); anything that changes the table meanwhile voids the plan.
   */
  prepareTable(table: Table, desired: TableState, opts: { reuseLastWrite?: boolean } = {}): void {
    this.prepared.delete(table);
    const known = opts.reuseLastWrite ? this.known.get(table) : undefined;
    if (known === undefined) return;
    this.prepared.set(table, this.plan(table, desired, known, this.written.get(table)));
  }

  /** Tables whose last stage the kernel refused: not staged again until a sync lands whole. */
  private readonly stageRefused = new Set<Table>();

  /**
   * Write the chains of `desired` the kernel lacks, unlinked (planStage), then plan the sync that
   * links them in (as prepareTable). A pass does this while the ipset restore fills the sets those
   * chains name: the sets exist by then, so the chains load, and no packet reaches them before
   * the sync that follows the fill. Only on nft and against a table we know (`reuseLastWrite`): a
   * legacy restore rewrites the whole table, so a stage there would be a second full write.
   * Resolves to the number of chains staged. A refused stage stages nothing (the sync then writes
   * everything, and its refusal handling names the culprit), and the table is not staged again
   * until a sync of it lands whole.
   */
  async stageTable(
    table: Table,
    desired: TableState,
    opts: { reuseLastWrite?: boolean } = {},
  ): Promise<number> {
    const known = opts.reuseLastWrite ? this.known.get(table) : undefined;
    const stage =
      this.stagesBesideSets && known !== undefined && !this.stageRefused.has(table)
        ? planStage(table, desired, known)
        : undefined;
    if (stage !== undefined) {
      this.prepared.delete(table);
      const started = performance.now();
      const outcome = await this.writeStage(table, stage.script);
      if (outcome === 'landed' && this.known.get(table) === known) this.known.set(table, stage.after);
      else if (outcome === 'landed' || outcome === 'unsure') {
        this.known.delete(table);
        this.written.delete(table);
      } else this.stageRefused.add(table);
      log.debug(
        {
          table,
          netns: this.netns,
          chains: stage.chains,
          rules: stage.rules,
          outcome,
          ms: performance.now() - started,
        },
        'iptables stage (new chains, unlinked)',
      );
      if (outcome !== 'landed') return 0;
    }
    this.prepareTable(table, desired, opts);
    return stage?.chains ?? 0;
  }

  /** A stage through the kept process, else one run; never retried (the sync after it writes all). */
  private async writeStage(table: Table, script: string): Promise<'landed' | 'refused' | 'unsure'> {
    if (this.session !== undefined) {
      const out = await this.session.write(script, (pid) => this.watch?.ours(pid, table));
      if (out.result !== 'not-sent') return out.result;
    }
    return (await this.oneOff(table, script, false)).exitCode === 0 ? 'landed' : 'refused';
  }

  private plan(
    table: Table,
    desired: TableState,
    full: ParsedTable,
    written: TableState | undefined,
  ): PreparedSync {
    // What the kernel holds is exactly our last write: plan over what changed since.
    const part =
      written !== undefined
        ? narrowToChanges(desired, written, full)
        : { desired, actual: full, pinned: undefined };
    const plan = planRestore(table, part.desired, part.actual, { pinned: part.pinned });
    // What the table holds once the plan lands (no chain refused), made now rather than after it.
    const after =
      plan.script === undefined
        ? full
        : written !== undefined
          ? mergeAfter(full, part.actual, expectedAfter(part.desired, part.actual, plan))
          : expectedAfter(part.desired, part.actual, plan);
    return { desired, full, written, part, plan, after };
  }

  async syncTable(
    table: Table,
    desired: TableState,
    opts: { reuseLastWrite?: boolean } = {},
  ): Promise<IptStats> {
    const known = opts.reuseLastWrite ? this.known.get(table) : undefined;
    const written = known !== undefined ? this.written.get(table) : undefined;
    const ready = this.prepared.get(table);
    this.prepared.delete(table);
    const pre =
      ready !== undefined &&
      known !== undefined &&
      ready.desired === desired &&
      ready.full === known &&
      ready.written === written
        ? ready
        : this.plan(table, desired, known ?? (await this.read(table)), written);
    const { full, part, plan } = pre;
    this.known.delete(table);
    this.written.delete(table);
    const { actual } = part;
    // Round 0 of the refusal loop is the plan made above; later rounds keep refused chains back.
    const planWith = (keep: ReadonlySet<string>) =>
      keep.size === 0 ? plan : planRestore(table, part.desired, actual, { keep, pinned: part.pinned });
    if (plan.stats.chainsKept.length > 0 && written === undefined) {
      log.warn(
        { table, chains: plan.stats.chainsKept, netns: this.netns },
        'stale chains still referenced; kept',
      );
    }
    if (plan.script === undefined) {
      this.known.set(table, full);
      this.written.set(table, desired);
      return { ...plan.stats, table, lines: 0, commands: 0, ms: 0, refused: [] };
    }
    const started = performance.now();
    const order = [...part.desired.chains.map((c) => c.name), ...actual.chains.keys()];
    const result = await applyAcceptedChains(
      planWith,
      (script) => this.restore(table, script, false),
      (script) => this.restore(table, script, true),
      order,
    );
    const ms = performance.now() - started;
    if ('failed' in result) {
      // No chain to blame: the table as a whole is refused (the kernel keeps what it had).
      throw new CommandError(`${TOOLS[this.backend].restore} --noflush`, undefined, result.failed);
    }
    const refused: RefusedChain[] = [...result.refused].map(([chain, reason]) => ({
      chain,
      reason: full.chains.has(chain) ? reason : `${reason} (never loaded: its placeholder drops)`,
    }));
    const p = result.plan;
    if (refused.length === 0) {
      this.known.set(table, pre.after);
      this.written.set(table, desired);
      this.stageRefused.delete(table);
    }
    log.debug(
      { table, backend: this.backend, netns: this.netns, lines: p.lines, ms, attempts: result.attempts },
      'iptables-restore',
    );
    return { ...p.stats, table, lines: p.lines, commands: result.attempts, ms, refused };
  }

  private async restore(
    table: Table,
    script: string,
    test: boolean,
  ): Promise<{ exitCode: number; stderr: string }> {
    if (!test && this.session !== undefined) {
      const out = await this.session.write(script, (pid) => this.watch?.ours(pid, table));
      // It may have landed or not: planning on must start from a read (the pass fails and retries).
      if (out.result === 'unsure') throw new CommandError(`${TOOLS.nft.restore} (kept)`, undefined, out.why);
      if (out.result === 'landed') return { exitCode: 0, stderr: '' };
      // Refused (nothing of it landed) or not sent: the usual run says which line and why.
    }
    return this.oneOff(table, script, test);
  }

  /** One restore process of its own (`test`: `--test`, nothing committed). */
  private async oneOff(
    table: Table,
    script: string,
    test: boolean,
  ): Promise<{ exitCode: number; stderr: string }> {
    const args = ['--noflush', '--wait', ...(test ? ['--test'] : [])];
    const res = await run(TOOLS[this.backend].restore, args, {
      netns: this.netns,
      input: script,
      allowFailure: true,
      onSpawn: (pid) => this.watch?.ours(pid, table),
    });
    return { exitCode: res.exitCode, stderr: res.stderr || res.stdout };
  }
}
