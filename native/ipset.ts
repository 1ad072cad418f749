// IP sets through the `ipset` tool: read everything with one `ipset save`, diff against the desired
// sets with a pure function, write the delta with one `ipset restore`.
//
// Ownership: only sets named cali40* (IPv4), cali60* (IPv6) and the temporary cali4t* (cali6t* for
// IPv6 temps, as Felix names them) are
// ever read into the model, changed or destroyed; every other set (`foo`, a kube-proxy set) is
// invisible to this driver.
//
// Type changes: the kernel refuses `ipset swap` between sets of different types (their feature
// flags differ: "The sets cannot be swapped: their type does not match"), and refuses to destroy or
// rename a set that iptables references. So:
//   - same type, different header (maxelem, an older hashsize): Felix's way — fill a temp set
//     cali4t<N>, `swap` it into place (iptables references follow the name's index), destroy the temp;
//   - different type or family: `destroy` and re-`create` under the same name, which the kernel
//     only allows while nothing references the set. A referenced set is left as it is and reported
//     in `stats.blocked`; the caller must stop referencing it (or use a new name) first.
import { logger } from '../lib/log.ts';
import { CommandError, run } from './exec.ts';
import { RestoreSession } from './restore-session.ts';

const log = logger('ipset');

export type IpSetType = 'hash:net' | 'hash:ip' | 'hash:ip,port';
export type IpSetFamily = 'inet' | 'inet6';

/**
 * A desired set's members: a set, or a list as the calculation graph sends it (a cold start writes
 * 290,000 members; making each list a Set first, only to read it once, cost 0.1 s). A member a
 * list repeats is written twice, which `-exist` makes harmless.
 */
export type Members = ReadonlySet<string> | readonly string[];

export interface IpSetSpec {
  name: string;
  type: IpSetType;
  /** Members in ipset's own text form: '10.0.0.5', '10.0.0.0/24', '10.0.0.5,tcp:80'. */
  members: Members;
}

/** A set as read back from the kernel: the spec plus the header fields that decide swap vs. update. */
export interface KernelIpSet extends IpSetSpec {
  members: ReadonlySet<string>;
  family?: IpSetFamily;
  maxelem?: number;
}

/** How many members (a repeated one counted each time: for sizing and stats only). */
export function memberCount(members: Members): number {
  return Array.isArray(members) ? members.length : (members as ReadonlySet<string>).size;
}

/** The members as a set: a list is made into one when a lookup needs it. */
function memberSet(members: Members): ReadonlySet<string> {
  return Array.isArray(members) ? new Set(members) : (members as ReadonlySet<string>);
}

/** Large enough for any cluster; hash sets allocate lazily, so this costs nothing up front. */
export const MAXELEM = 1_048_576;

const OWNED_PREFIXES = ['cali40', 'cali60', 'cali4t', 'cali6t'] as const;
const SET_TYPES: readonly IpSetType[] = ['hash:net', 'hash:ip', 'hash:ip,port'];
/** IPSET_MAXNAMELEN is 32 including the NUL. */
const MAX_NAME = 31;

export function isOwnedIpSet(name: string): boolean {
  return OWNED_PREFIXES.some((p) => name.startsWith(p));
}

export function familyOf(name: string): IpSetFamily {
  return name.startsWith('cali6') ? 'inet6' : 'inet';
}

// ---------------------------------------------------------------------------------------------
// Member normalisation: the kernel prints members in a canonical form that differs from what one
// may write (hash:net prints a /32 as a bare address and zeroes host bits, hash:ip,port prints a
// bare port as tcp:PORT). Desired members are brought into that form, so that a set already in
// the right state diffs as equal; the `ipset save` side is canonical already.

function stripHostPrefix(addr: string, family: IpSetFamily): string {
  const full = family === 'inet' ? '/32' : '/128';
  return addr.endsWith(full) ? addr.slice(0, -full.length) : addr;
}

/** Zero the host bits of an IPv4 CIDR, as the kernel does for hash:net members. */
function canonicalNet4(m: string): string {
  const [addr, lenStr] = m.split('/');
  if (addr === undefined || lenStr === undefined) return m;
  const len = Number(lenStr);
  const parts = addr.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return m;
  if (!Number.isInteger(len) || len < 0 || len > 32) return m;
  const n = parts.reduce((acc, p) => acc * 256 + p, 0);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  const base = (n & mask) >>> 0;
  const ip = [base >>> 24, (base >>> 16) & 255, (base >>> 8) & 255, base & 255].join('.');
  return len === 32 ? ip : `${ip}/${len}`;
}

export function normaliseMember(type: IpSetType, family: IpSetFamily, member: string): string {
  // Fast paths first: a resync normalises every desired member (100k+), most already canonical.
  let m = member;
  if (m.charCodeAt(0) <= 32 || m.charCodeAt(m.length - 1) <= 32) m = m.trim();
  if (family === 'inet6' || /[A-Z]/.test(m)) m = m.toLowerCase();
  switch (type) {
    case 'hash:net':
      if (!m.includes('/')) return m;
      // A host route (most members): the kernel prints it bare. Dotted quads from the graph are
      // canonical already; the slow path below only zeroes host bits of wider prefixes.
      if (family === 'inet' && m.endsWith('/32')) return m.slice(0, -3);
      return family === 'inet' ? canonicalNet4(m) : stripHostPrefix(m, family);
    case 'hash:ip':
      return m.includes('/') ? stripHostPrefix(m, family) : m;
    case 'hash:ip,port': {
      const comma = m.lastIndexOf(',');
      if (comma < 0) return m;
      const ip = stripHostPrefix(m.slice(0, comma), family);
      const port = m.slice(comma + 1);
      return `${ip},${port.includes(':') ? port : `tcp:${port}`}`;
    }
  }
}

function normalisedMembers(set: IpSetSpec, family: IpSetFamily): Set<string> {
  const out = new Set<string>();
  for (const m of set.members) out.add(normaliseMember(set.type, family, m));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Parsing `ipset save`.

/** Owned sets from `ipset save` text (all sets, members included). Foreign sets are skipped. */
export function parseIpSetSave(text: string): Map<string, KernelIpSet> {
  const sets = new Map<string, KernelIpSet & { members: Set<string> }>();
  let cur: (KernelIpSet & { members: Set<string> }) | undefined;
  let curName = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('add ')) {
      // Hot path (one line per member): "add NAME MEMBER[ options]"; members follow their create.
      const nameEnd = line.indexOf(' ', 4);
      if (nameEnd < 0) continue;
      const set = line.slice(4, nameEnd) === curName ? cur : sets.get(line.slice(4, nameEnd));
      if (set === undefined) continue;
      const memberEnd = line.indexOf(' ', nameEnd + 1);
      set.members.add(line.slice(nameEnd + 1, memberEnd < 0 ? undefined : memberEnd));
    } else if (line.startsWith('create ')) {
      const tok = line.trim().split(/\s+/);
      const [, name = '', type = ''] = tok;
      curName = name;
      cur = undefined;
      if (!isOwnedIpSet(name)) continue;
      // An owned name with a type we never create (list:set, bitmap:...) is still reported, with
      // its real type, so that a diff sees the mismatch and re-creates it.
      cur = kernelSet(name, type, tok);
      sets.set(name, cur);
    }
  }
  return sets;
}

/** A set as a header describes it (the tokens of a `create` line or of `Header:`), no members yet. */
function kernelSet(
  name: string,
  type: string,
  tok: readonly string[],
): KernelIpSet & { members: Set<string> } {
  const fam = tok[tok.indexOf('family') + 1];
  const maxIdx = tok.indexOf('maxelem');
  return {
    name,
    type: type as IpSetType,
    members: new Set(),
    family: fam === 'inet6' ? 'inet6' : 'inet',
    maxelem: maxIdx >= 0 ? Number(tok[maxIdx + 1]) : undefined,
  };
}

/** One set's header in a listing: its type, how many rules refer to it, how many members it holds. */
export interface IpSetHeader {
  type: string;
  references: number;
  entries: number;
}

/**
 * An `ipset list` listing (plain form; `ipset restore` prints `list` commands the same way): every
 * set's header, and the owned sets listed with their members (not terse), as the kernel holds
 * them. The drift check reads both from one run (a slice of sets with their members, then `list
 * -t`); a type change asks which sets are referenced (`list -t`).
 */
export function parseIpSetList(text: string): {
  headers: Map<string, IpSetHeader>;
  sets: Map<string, KernelIpSet>;
} {
  const headers = new Map<string, IpSetHeader>();
  const sets = new Map<string, KernelIpSet>();
  let name = '';
  let head: IpSetHeader = { type: '', references: 0, entries: 0 };
  let header = '';
  let members: Set<string> | undefined;
  // Read line by line in place: a check every few seconds reads 20,000 headers (160,000 lines),
  // and only names, members and a few fields become strings.
  const n = text.length;
  for (let pos = 0; pos < n; ) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = n;
    const next = end + 1;
    if (members !== undefined) {
      // Hot path: one line per member, until the next set's "Name:" (or the end).
      if (!text.startsWith('Name: ', pos)) {
        if (end > pos) members.add(text.slice(pos, end));
        pos = next;
        continue;
      }
      members = undefined;
    }
    // Told apart by their first letter first: most lines are none of these (Revision, Size in memory).
    switch (text.charCodeAt(pos)) {
      case 0x4e: // N
        if (text.startsWith('Name: ', pos)) {
          name = text.slice(pos + 6, end).trim();
          head = { type: '', references: 0, entries: 0 };
          headers.set(name, head);
          header = '';
        } else if (text.startsWith('Number of entries: ', pos)) head.entries = numberIn(text, pos + 19, end);
        break;
      case 0x54: // T
        if (text.startsWith('Type: ', pos)) head.type = text.slice(pos + 6, end).trim();
        break;
      case 0x48: // H
        if (text.startsWith('Header: ', pos)) header = text.slice(pos + 8, end);
        break;
      case 0x52: // R
        if (text.startsWith('References: ', pos)) head.references = numberIn(text, pos + 12, end);
        break;
      case 0x4d: // M
        if (end - pos === 8 && text.startsWith('Members:', pos) && isOwnedIpSet(name)) {
          const set = kernelSet(name, head.type, header.split(/\s+/));
          members = set.members;
          sets.set(name, set);
        }
        break;
    }
    pos = next;
  }
  return { headers, sets };
}

/**
 * The kernel memory the sets of a listing hold by ipset's own count ("Size in memory", in bytes),
 * which leaves out the allocators' rounding: for the benchmarks, not the drift check's reader.
 */
export function listedMemoryBytes(listing: string): number {
  let bytes = 0;
  for (const m of listing.matchAll(/^Size in memory: (\d+)$/gm)) bytes += Number(m[1]);
  return bytes;
}

/** `Number(text.slice(from, to))`, without the slice for the usual plain digits. */
function numberIn(text: string, from: number, to: number): number {
  let v = 0;
  for (let i = from; i < to; i++) {
    const d = text.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9 || i - from > 14) return Number(text.slice(from, to));
    v = v * 10 + d;
  }
  return to > from ? v : 0;
}

/** Same kind, header and members (members in the kernel's canonical form on both sides). */
export function sameSet(a: KernelIpSet, b: KernelIpSet): boolean {
  if (a.type !== b.type || (a.family ?? 'inet') !== (b.family ?? 'inet')) return false;
  if ((a.maxelem ?? MAXELEM) !== (b.maxelem ?? MAXELEM) || a.members.size !== b.members.size) return false;
  for (const m of b.members) if (!a.members.has(m)) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// The pure diff.

export interface IpSetDiffStats {
  /** Sets created because they did not exist. */
  created: number;
  /** Same type, different header: rebuilt in a temp set and swapped in. */
  swapped: number;
  /** Different type or family, not referenced: destroyed and created again. */
  recreated: number;
  /** Members added / deleted in place. */
  added: number;
  deleted: number;
  /** Sets whose type must change but that the kernel holds in use; left untouched. */
  blocked: string[];
  /** Lines in the restore script. */
  lines: number;
}

export interface IpSetDiffOptions {
  /** Sets the kernel reports as referenced (only consulted for type changes). */
  inUse?: ReadonlySet<string>;
  /**
   * Member changes since the last write, by set, in the desired form: a set `actual` holds with
   * the same type and header is written from these alone instead of compared member by member
   * (one endpoint's change to a set of 100,000). Valid only while `actual` is exactly what that
   * write left, and for members in one canonical form each (the calculation graph's nets), so
   * that no two desired members normalise alike.
   */
  deltas?: ReadonlyMap<string, MemberDelta>;
}

/** Members added to and removed from a set since it was last written. */
export interface MemberDelta {
  added: ReadonlySet<string>;
  removed: ReadonlySet<string>;
}

function validateDesired(set: IpSetSpec, key: string): void {
  if (set.name !== key) throw new Error(`ipset map key ${key} does not match set name ${set.name}`);
  if (!(set.name.startsWith('cali40') || set.name.startsWith('cali60'))) {
    throw new Error(`ipset ${set.name}: desired sets must be named cali40*/cali60*`);
  }
  if (set.name.length > MAX_NAME) throw new Error(`ipset ${set.name}: longer than ${MAX_NAME} characters`);
  if (!SET_TYPES.includes(set.type)) throw new Error(`ipset ${set.name}: unsupported type ${set.type}`);
}

/**
 * The smallest hash size the kernel accepts. Felix leaves every set at the kernel's default of
 * 1,024 buckets; a policy's set mostly holds a few hundred members or fewer, and the buckets cost
 * kernel memory and every header listing walks them (the drift check lists every header every few
 * seconds). Measured with 2,000 sets of 145 members, at 128 buckets against 1,024: `ipset list -t`
 * 20-40 ms → 10 ms; the kernel's memory for them 52 → 16.5 MB (Slab + vmalloc + per-CPU in
 * /proc/meminfo, 2 runs each; ipset's own "Size in memory" undercounts: 13.6 → 10.4 MB).
 */
const MIN_HASHSIZE = 64;

/**
 * The hash size for a set created with `members` members: the size the kernel would grow it to
 * (about two members a bucket), so a cold start's 100,000-member set is not rehashed six times
 * while it is filled (measured: 100,000 adds 0.33 s → 0.27 s), and a small set does not take
 * 1,024 buckets. A set that grows later is rehashed by the kernel as it fills.
 */
export function initialHashSize(members: number): number {
  let size = MIN_HASHSIZE;
  while (size * 2 < members) size *= 2;
  return size;
}

function createLine(name: string, type: IpSetType, family: IpSetFamily, members = 0): string {
  return `create ${name} ${type} family ${family} hashsize ${initialHashSize(members)} maxelem ${MAXELEM} -exist`;
}

/** Hands out cali4t<N>/cali6t<N> names not already present in the kernel. */
function tempNamer(actual: ReadonlyMap<string, IpSetSpec>): (family: IpSetFamily) => string {
  let n = 0;
  return (family) => {
    const prefix = family === 'inet' ? 'cali4t' : 'cali6t';
    while (actual.has(`${prefix}${n}`)) n++;
    return `${prefix}${n++}`;
  };
}

/**
 * The `ipset restore` script that turns `actual` into `desired` for every desired set. Sets that
 * exist but are not desired are left alone (see IpSetDriver.destroyStale). Empty script: nothing
 * to do.
 */
export function diffIpSets(
  desired: ReadonlyMap<string, IpSetSpec>,
  actual: ReadonlyMap<string, IpSetSpec | KernelIpSet>,
  opts: IpSetDiffOptions = {},
): IpSetDiff {
  /** Script lines; a set's fill stays a reference to its members until the text is wanted. */
  const lines: (string | Fill)[] = [];
  /** What the kernel holds for each desired set once the script has run (blocked ones excepted). */
  const after = new Map<string, KernelIpSet>();
  const stats: IpSetDiffStats = {
    created: 0,
    swapped: 0,
    recreated: 0,
    added: 0,
    deleted: 0,
    blocked: [],
    lines: 0,
  };
  const nextTemp = tempNamer(actual);
  const creates: string[] = [];
  /** Sets written from their deltas: `after` holds the kernel's own set, changed once the write lands. */
  const settle: (() => void)[] = [];

  const fill = (name: string, members: ReadonlySet<string>) => {
    if (members.size > 0) lines.push({ name, members, count: members.size });
  };

  for (const [key, want] of desired) {
    validateDesired(want, key);
    const family = familyOf(want.name);
    const have = actual.get(want.name) as KernelIpSet | undefined;
    if (have === undefined) {
      // A new set (a cold start: 290,000 members): its members are normalised as its text is
      // made, not here before the tool can start. A list (a graph message's, never changed
      // after) is normalised into what the kernel holds only when that is first read; a set the
      // caller may change later is recorded as its text is made.
      const count = memberCount(want.members);
      const create = createLine(want.name, want.type, family, count);
      lines.push(create);
      creates.push(create);
      const list = Array.isArray(want.members) ? (want.members as readonly string[]) : undefined;
      const into = list === undefined ? new Set<string>() : undefined;
      if (count > 0)
        lines.push({
          name: want.name,
          members: want.members,
          count,
          normalise: { type: want.type, family, into },
        });
      stats.created++;
      stats.added += count;
      after.set(
        want.name,
        list ? writtenFromList(want, family, list) : { ...kernelHeader(want, family), members: into! },
      );
      continue;
    }
    const delta = opts.deltas?.get(want.name);
    if (
      delta !== undefined &&
      have.type === want.type &&
      (have.family ?? family) === family &&
      (have.maxelem ?? MAXELEM) === MAXELEM
    ) {
      const gone: string[] = [];
      const come: string[] = [];
      // A set changed by deltas is one the manager holds as a Set already (made so to apply them).
      const wanted = memberSet(want.members);
      for (const raw of delta.removed) {
        if (wanted.has(raw)) continue;
        const m = normaliseMember(want.type, family, raw);
        if (!have.members.has(m)) continue;
        lines.push(`del ${want.name} ${m} -exist`);
        gone.push(m);
      }
      for (const raw of delta.added) {
        if (!wanted.has(raw)) continue;
        const m = normaliseMember(want.type, family, raw);
        if (have.members.has(m)) continue;
        lines.push(`add ${want.name} ${m} -exist`);
        come.push(m);
      }
      stats.deleted += gone.length;
      stats.added += come.length;
      after.set(want.name, have);
      if (gone.length + come.length > 0)
        settle.push(() => {
          // The driver's own record (parsed from a save, or made by an earlier diff), never a
          // caller's set: changed in place rather than copied, 100,000 members per change.
          const members = have.members as Set<string>;
          for (const m of gone) members.delete(m);
          for (const m of come) members.add(m);
        });
      continue;
    }
    const wantMembers = normalisedMembers(want, family);
    const written: KernelIpSet = { ...kernelHeader(want, family), members: wantMembers };

    const sameKind = have.type === want.type && (have.family ?? family) === family;
    if (!sameKind) {
      if (opts.inUse?.has(want.name)) {
        stats.blocked.push(want.name);
        continue;
      }
      lines.push(`destroy ${want.name}`, createLine(want.name, want.type, family, wantMembers.size));
      fill(want.name, wantMembers);
      stats.recreated++;
      stats.added += wantMembers.size;
      after.set(want.name, written);
      continue;
    }
    if ((have.maxelem ?? MAXELEM) !== MAXELEM) {
      const temp = nextTemp(family);
      lines.push(createLine(temp, want.type, family, wantMembers.size));
      fill(temp, wantMembers);
      lines.push(`swap ${temp} ${want.name}`, `destroy ${temp}`);
      stats.swapped++;
      stats.added += wantMembers.size;
      after.set(want.name, written);
      continue;
    }
    // The kernel prints members canonically already: only the desired side needs normalising.
    const haveMembers = have.members;
    for (const m of haveMembers) {
      if (!wantMembers.has(m)) {
        lines.push(`del ${want.name} ${m} -exist`);
        stats.deleted++;
      }
    }
    for (const m of wantMembers) {
      if (!haveMembers.has(m)) {
        lines.push(`add ${want.name} ${m} -exist`);
        stats.added++;
      }
    }
    after.set(want.name, written);
  }
  for (const l of lines) stats.lines += linesOf(l);
  return new IpSetDiff(lines, stats, after, creates, settle);
}

/** What the kernel says of a set we write, but its members. */
function kernelHeader(want: IpSetSpec, family: IpSetFamily): Omit<KernelIpSet, 'members'> {
  return { name: want.name, type: want.type, family, maxelem: MAXELEM };
}

/**
 * What the kernel holds once a new set's fill from a list lands: the list normalised, made when
 * first read (the drift check, a later diff), not while a cold start waits for its writes.
 */
function writtenFromList(want: IpSetSpec, family: IpSetFamily, list: readonly string[]): KernelIpSet {
  let members: Set<string> | undefined;
  return {
    ...kernelHeader(want, family),
    get members(): Set<string> {
      members ??= normalisedMembers({ ...want, members: list }, family);
      return members;
    },
  };
}

/** The set a script line (or fill) is about: a line's second word. */
function setOfScriptLine(l: string | Fill): string {
  return typeof l === 'string' ? (l.split(' ', 2)[1] ?? '') : l.name;
}

/** The script lines a line (or fill) makes. */
function linesOf(l: string | Fill): number {
  return typeof l === 'string' ? 1 : l.count;
}

/** The members of one set to add, as `add` lines when the text is made. */
interface Fill {
  name: string;
  members: Members;
  count: number;
  /** Members not normalised yet: normalise each as its line is made (and record it `into`). */
  normalise?: { type: IpSetType; family: IpSetFamily; into: Set<string> | undefined };
}

/**
 * The nice level of a cold start's side-by-side restores while the tables load beside them.
 * Measured in 6 pairs (100k endpoints on 10k nodes, nf_tables): at 3 the kernel writes ended
 * 100–350 ms sooner (median 2.22 → 1.96 s), the fill then ending with the table load rather than
 * 0.4–0.9 s before it; at 6 the results were mixed.
 */
const FILL_NICE = 3;

/** Bytes per piece of a streamed script. */
const PIECE_BYTES = 256 * 1024;

/**
 * Fills buffers of PIECE_BYTES with script text: a cold start's 15 MiB go straight into memory
 * the tool reads from, not through 290,000 strings joined and then encoded (60 MiB of garbage).
 */
class PieceBuffer {
  private buf: Buffer | undefined;
  private off = 0;

  /** Room for `n` more bytes in this piece (false: take it first). */
  fits(n: number): boolean {
    return this.off + n <= PIECE_BYTES;
  }

  /** The piece so far; the next one is begun by the next `put`. */
  take(): Buffer {
    const out = this.buf?.subarray(0, this.off) ?? Buffer.alloc(0);
    this.buf = undefined;
    this.off = 0;
    return out;
  }

  get empty(): boolean {
    return this.off === 0;
  }

  /**
   * An IPv4 hash:net member as the kernel prints it, when the text is digits and dots with or
   * without "/32" (what `normaliseMember` returns unchanged, but for that suffix): written without
   * making the normalised string. False, with nothing written, for anything else.
   */
  putPlainNet4(m: string): boolean {
    let end = m.length;
    if (
      end > 3 &&
      m.charCodeAt(end - 3) === 0x2f &&
      m.charCodeAt(end - 2) === 0x33 &&
      m.charCodeAt(end - 1) === 0x32
    )
      end -= 3;
    this.buf ??= Buffer.allocUnsafe(PIECE_BYTES);
    const buf = this.buf;
    let off = this.off;
    for (let i = 0; i < end; i++) {
      const c = m.charCodeAt(i);
      if ((c < 0x30 || c > 0x39) && c !== 0x2e) return false;
      buf[off++] = c;
    }
    this.off = off;
    return true;
  }

  /** Text that fits (see `fits`): one byte a character, the common case, or else UTF-8. */
  put(s: string): void {
    this.buf ??= Buffer.allocUnsafe(PIECE_BYTES);
    const buf = this.buf;
    let off = this.off;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) {
        this.off += buf.write(s, this.off, 'utf8');
        return;
      }
      buf[off++] = c;
    }
    this.off = off;
  }
}

/** The UTF-8 length of text, with the one-byte case (all our text) cheap. */
function byteLength(s: string): number {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s);
  return s.length;
}

/**
 * A diff's restore script, made as text only when wanted: whole (`script`), or in pieces as a
 * tool reads them (`pieces`), so that a cold start's ipset restore starts on the first piece
 * instead of after 15 MiB of text.
 */
export class IpSetDiff {
  private text: string | undefined;

  constructor(
    private readonly lines: readonly (string | Fill)[],
    readonly stats: IpSetDiffStats,
    /** What the kernel holds for each desired set once the script has run (blocked ones excepted). */
    readonly after: Map<string, KernelIpSet>,
    /** The create lines of the sets the kernel lacks (also in `lines`, each before its fill). */
    readonly creates: readonly string[] = [],
    /** Brings `after`'s sets written from deltas up to date: call once the script has landed. */
    private readonly settle: readonly (() => void)[] = [],
  ) {}

  /** The script landed: `after` is now what the kernel holds (see settle). */
  landed(): void {
    for (const f of this.settle) f();
  }

  get empty(): boolean {
    return this.lines.length === 0;
  }

  /** The whole script ('' when there is nothing to do). */
  get script(): string {
    this.text ??= this.lines.length === 0 ? '' : Buffer.concat([...this.pieces()]).toString('utf8');
    return this.text;
  }

  /**
   * The script cut into up to `n` scripts of whole sets, about equal in lines, for tools run side
   * by side; undefined when it cannot be cut: a swap or a destroy ties lines of two sets together.
   * Each part's `after` is the whole script's (its members fill in as any part's text is made).
   */
  split(n: number): IpSetDiff[] | undefined {
    if (this.stats.swapped > 0 || this.stats.recreated > 0) return undefined;
    const bySet = new Map<string, { lines: (string | Fill)[]; size: number }>();
    for (const l of this.lines) {
      const name = setOfScriptLine(l);
      const group = bySet.get(name) ?? { lines: [], size: 0 };
      group.lines.push(l);
      group.size += linesOf(l);
      bySet.set(name, group);
    }
    const parts = Array.from({ length: n }, () => ({ lines: [] as (string | Fill)[], size: 0 }));
    for (const g of [...bySet.values()].sort((a, b) => b.size - a.size)) {
      const part = parts.reduce((min, p) => (p.size < min.size ? p : min));
      for (const l of g.lines) part.lines.push(l);
      part.size += g.size;
    }
    return parts
      .filter((p) => p.lines.length > 0)
      .map((p) => new IpSetDiff(p.lines, { ...this.stats, lines: p.size }, this.after));
  }

  /**
   * The script cut in order into scripts of at most `maxSets` sets each (whole sets), to run one
   * after another; itself when it names no more. `split`'s conditions apply.
   */
  chunks(maxSets: number): IpSetDiff[] {
    if (this.stats.swapped > 0 || this.stats.recreated > 0) return [this];
    const names = new Set<string>();
    const cuts: { lines: (string | Fill)[]; size: number }[] = [{ lines: [], size: 0 }];
    for (const l of this.lines) {
      const name = setOfScriptLine(l);
      if (!names.has(name)) {
        if (names.size > 0 && names.size % maxSets === 0) cuts.push({ lines: [], size: 0 });
        names.add(name);
      }
      const cut = cuts[cuts.length - 1]!;
      cut.lines.push(l);
      cut.size += linesOf(l);
    }
    if (cuts.length === 1) return [this];
    return cuts.map((c) => new IpSetDiff(c.lines, { ...this.stats, lines: c.size }, this.after));
  }

  /** The script in pieces of whole lines, in order. */
  *pieces(): Generator<Buffer> {
    if (this.lines.length === 0) return;
    const out = new PieceBuffer();
    /** A line of its own (a create, a swap), taking the piece first when it would not fit. */
    function* line(text: string): Generator<Buffer> {
      const n = byteLength(text) + 1;
      if (!out.fits(n)) {
        if (!out.empty) yield out.take();
        if (!out.fits(n)) {
          yield Buffer.from(`${text}\n`);
          return;
        }
      }
      out.put(text);
      out.put('\n');
    }
    for (const l of this.lines) {
      if (typeof l === 'string') {
        yield* line(l);
        continue;
      }
      const prefix = `add ${l.name} `;
      const norm = l.normalise;
      // IPv4 nets of a list: most are written straight from the graph's text (see putPlainNet4).
      const plainNets = norm?.type === 'hash:net' && norm.family === 'inet' && norm.into === undefined;
      for (const raw of l.members) {
        // Room for the line however it encodes (3 bytes a character at most); a member of more than
        // a piece (never a real one) goes as a line of its own.
        const room = (prefix.length + raw.length) * 3 + 8;
        if (!out.fits(room)) {
          if (!out.empty) yield out.take();
          if (!out.fits(room)) {
            const m = norm ? normaliseMember(norm.type, norm.family, raw) : raw;
            norm?.into?.add(m);
            yield* line(`${prefix}${m} -exist`);
            continue;
          }
        }
        out.put(prefix);
        if (!plainNets || !out.putPlainNet4(raw)) {
          // A member twice after normalising is written twice (-exist): the text is the same
          // however often it is made (a refusal reads its lines again).
          const m = norm ? normaliseMember(norm.type, norm.family, raw) : raw;
          norm?.into?.add(m);
          out.put(m);
        }
        out.put(' -exist\n');
      }
    }
    yield* line('COMMIT');
    yield out.take();
  }
}

/** The pieces, then `done` once the last has been taken. */
function* handedOver(pieces: Iterable<Buffer>, done: (() => void) | undefined): Generator<Buffer> {
  yield* pieces;
  done?.();
}

// ---------------------------------------------------------------------------------------------
// The driver.

export interface IpSetStats extends IpSetDiffStats {
  /** Write commands run: 0 when the kernel already matched. */
  commands: number;
  ms: number;
  /** Sets the kernel refused a line of: left as they were (the rest of the batch is applied). */
  refused: { set: string; reason: string }[];
}

/**
 * The desired set a refused restore line is about: its second word, or for a temp set (filled to be
 * swapped in) the set it was to replace.
 */
export function setOfLine(script: string, line: number): string | undefined {
  const lines = script.split('\n');
  const name = lines[line - 1]?.split(' ')[1];
  if (name === undefined || !/^cali[46]t/.test(name)) return name;
  return lines.find((l) => l.startsWith(`swap ${name} `))?.split(' ')[2] ?? name;
}

export interface IpSetDestroyStats {
  destroyed: string[];
  /** Still referenced by iptables (or another kernel user); retried on the next call. */
  inUse: string[];
  commands: number;
  ms: number;
}

/** How a write's `ipset restore` runs ended: the failed one's script, to read its line numbers in. */
interface RestoreOutcome {
  exitCode: number;
  stderr: string;
  /** Tool runs (or kept-session blocks) it took. */
  runs: number;
  /** The script of the run that failed (or the whole one). */
  script: IpSetDiff;
}

/** Scripts longer than this are streamed to the tool rather than written whole first. */
const STREAM_LINES = 20_000;
/** Tools a streamed script is shared among, side by side (one per core of a 2-core node). */
const RESTORE_PROCESSES = 2;
/**
 * The most sets one `ipset restore` run of a streamed write (a cold start's fill) names. The tool
 * (libipset) finds a line's set in a list of every set the run has named so far, from the first:
 * a line of the n-th set walks n entries (100,000 lines into the first of 8,000 sets just created:
 * 0.3 s; into the last: 2.6 s). 20,000 sets of 3.36M members in all: one run 97-146 s; the two
 * lines of 10,000 sets each 24.8 s; runs of 256 sets 12-14.5 s (runs of 64 or 1,024 no better).
 * Each run costs a process start, about 5 ms. Creating the sets (5-9 s of the kernel's at this
 * scale) gains nothing from runs.
 */
const SETS_PER_TOOL = 256;

const IN_USE = /in use by a kernel component/i;
/** Waits before trying a held set again (see IpSetDriver.destroy). */
const IN_USE_RETRY_MS = [5, 20, 50];
const GONE = /does not exist/i;

export class IpSetDriver {
  private readonly netns: string | undefined;
  /**
   * Our sets as the kernel holds them after our last successful write, so that a change is written
   * without reading 100,000 members back first (when the caller says so: `reuseLastWrite`).
   * Dropped on any failure; a caller re-reads on resync.
   */
  private known: Map<string, KernelIpSet> | undefined;
  /** Where the member sweep of the drift check goes on (an index into the sorted set names). */
  private sweepAt = 0;
  /** A cold start's side-by-side restores run at FILL_NICE (see restoreSideBySide) while this is on. */
  private bulkNice = false;
  /** `sortedNames`' answers, by the map (and its size) they were made for. */
  private readonly namesOf = new WeakMap<Map<string, KernelIpSet>, { size: number; names: string[] }>();

  /** A kept `ipset restore` for members-only writes (one endpoint's change): no process start. */
  private readonly session: RestoreSession;

  constructor(opts: { netns?: string } = {}) {
    this.netns = opts.netns;
    this.session = new RestoreSession('ipset', ['restore'], opts.netns);
  }

  /**
   * The owned sets our last write left that the kernel no longer holds as written: missing, or
   * with another member count (flushed, members added or deleted by hand), from the headers of
   * every set (`list -t`: the kernel keeps the count, no member listing); and, for a slice of the
   * sets taken in turn (`sweepShare` of all members, at least one set: a share of 1/30 covers every
   * member in 30 checks), a member swapped for another at the same count, from their listing. One
   * `ipset restore` run reads both: the slice's `list` commands, then `list -t` (terse mode stays
   * on once asked for, so it comes last). The drifted sets are re-read into what the next apply
   * diffs against.
   */
  async driftedSets(opts: { sweepShare?: number } = {}): Promise<string[]> {
    const known = this.known;
    if (known === undefined) return [];
    const share = opts.sweepShare ?? 0;
    const slice = share > 0 ? this.nextSlice(known, share) : [];
    const res = await run('ipset', ['restore'], {
      netns: this.netns,
      input: `${[...slice.map((n) => `list ${n}`), 'list -t'].join('\n')}\n`,
      allowFailure: true,
    });
    // A set of the slice deleted meanwhile stops the listing there: the headers alone say which.
    const listing =
      res.exitCode === 0
        ? parseIpSetList(res.stdout)
        : parseIpSetList((await run('ipset', ['list', '-t'], { netns: this.netns })).stdout);
    if (this.known !== known) return []; // an apply replaced it meanwhile; the next check looks again
    const drifted = [...known.values()]
      .filter((s) => listing.headers.get(s.name)?.entries !== s.members.size)
      .map((s) => s.name);
    // Re-read just these, so that the next apply (reusing the last write) repairs only them.
    for (const name of drifted) {
      const res = await run('ipset', ['save', name], { netns: this.netns, allowFailure: true });
      const set = res.exitCode === 0 ? parseIpSetSave(res.stdout).get(name) : undefined;
      if (this.known !== known) return drifted;
      if (set) known.set(name, set);
      else known.delete(name);
    }
    for (const name of slice) {
      const want = known.get(name);
      const got = listing.sets.get(name);
      if (want === undefined || got === undefined || drifted.includes(name) || sameSet(want, got)) continue;
      known.set(name, got);
      drifted.push(name);
    }
    return drifted;
  }

  /** The next sets in turn for the member sweep: `share` of all members' worth, at least one set. */
  private nextSlice(known: Map<string, KernelIpSet>, share: number): string[] {
    const names = this.sortedNames(known);
    let total = 0;
    for (const s of known.values()) total += s.members.size;
    const budget = Math.ceil(total * share);
    const slice: string[] = [];
    let members = 0;
    for (let i = 0; i < names.length && (slice.length === 0 || members < budget); i++) {
      const name = names[(this.sweepAt + i) % names.length] as string;
      slice.push(name);
      members += known.get(name)?.members.size ?? 0;
    }
    this.sweepAt = names.length === 0 ? 0 : (this.sweepAt + slice.length) % names.length;
    return slice;
  }

  /**
   * The names of `known`, sorted, made again only when its names may have changed: another map
   * (an apply's), or a set added or gone (a drift check's re-read). A check every few seconds would
   * otherwise sort 20,000 names each time.
   */
  private sortedNames(known: Map<string, KernelIpSet>): string[] {
    const cached = this.namesOf.get(known);
    if (cached?.size === known.size) return cached.names;
    const names = [...known.keys()].sort();
    this.namesOf.set(known, { size: known.size, names });
    return names;
  }

  /**
   * Whether applying `desired` only adds and deletes members of sets the kernel holds as our last
   * write left them: none created, none of another type or header. Such a write cannot make a rule
   * unloadable, so it may run beside the iptables write (see Dataplane).
   */
  membersOnly(desired: ReadonlyMap<string, IpSetSpec>): boolean {
    const known = this.known;
    if (known === undefined) return false;
    for (const [name, want] of desired) {
      const have = known.get(name);
      if (have === undefined || have.type !== want.type) return false;
      if ((have.family ?? familyOf(name)) !== familyOf(name) || (have.maxelem ?? MAXELEM) !== MAXELEM)
        return false;
    }
    return true;
  }

  /** Owned sets with their members, from one `ipset save`. */
  async list(): Promise<Map<string, KernelIpSet>> {
    const { stdout } = await run('ipset', ['save'], { netns: this.netns });
    return parseIpSetSave(stdout);
  }

  /**
   * Create missing sets, fix members and headers; never destroys a set that is not desired. A set
   * the kernel refuses a line of is left as it is (`ipset restore` stops at the refused line, having
   * applied the lines before it) and the rest is applied on a fresh read.
   */
  async apply(
    desired: ReadonlyMap<string, IpSetSpec>,
    opts: {
      reuseLastWrite?: boolean;
      maxRounds?: number;
      onWrite?: () => void;
      onCreated?: () => void;
      /** Member changes since the last write (see IpSetDiffOptions.deltas), used with reuseLastWrite. */
      deltas?: ReadonlyMap<string, MemberDelta>;
    } = {},
  ): Promise<IpSetStats> {
    const maxRounds = opts.maxRounds ?? 16;
    const refused: IpSetStats['refused'] = [];
    let commands = 0;
    let ms = 0;
    let before: Map<string, KernelIpSet> | undefined;
    // Members only, of sets as our last write left them: every line is an add or del with -exist,
    // so a block the kept session fails on can be written again whole, the usual way.
    const kept = opts.reuseLastWrite === true && this.membersOnly(desired);
    for (let round = 0; ; round++) {
      const reused = round === 0 && opts.reuseLastWrite ? this.known : undefined;
      const actual = reused ?? (await this.list());
      this.known = undefined;
      before ??= actual;
      // A refused set goes back to what it held before this call: the lines of its restore before
      // the refused one (a `del`, say) took effect.
      const want = new Map<string, IpSetSpec>();
      for (const [k, v] of desired) {
        if (!refused.some((r) => r.set === k)) want.set(k, v);
        else if (before.has(k)) want.set(k, before.get(k) as KernelIpSet);
      }
      // Deltas hold against our last write only, not against a fresh read.
      const deltas = reused !== undefined && refused.length === 0 ? opts.deltas : undefined;
      let diff = diffIpSets(want, actual, { deltas });
      if (diff.stats.recreated > 0) {
        // Only a type change needs the reference counts; ask once, then re-plan with them.
        diff = diffIpSets(want, actual, { deltas, inUse: await this.referencedSets() });
      }
      if (round === 0)
        for (const name of diff.stats.blocked) {
          log.warn(
            { set: name, netns: this.netns },
            'ipset type change blocked: set is referenced; left as is',
          );
        }
      const remember = () => {
        diff.landed();
        this.known = new Map(actual);
        for (const [name, set] of diff.after) this.known.set(name, set);
      };
      if (diff.empty) {
        if (refused.length === 0) remember();
        return { ...diff.stats, commands: commands + (await this.dropNew(refused, before)), ms, refused };
      }
      const started = performance.now();
      // A big script (a cold start) streams: the tool works on the first sets while the text of
      // the rest is made. The caller hears of the write once all of it is handed over.
      const onWrite = round === 0 ? opts.onWrite : undefined;
      const streamed = diff.stats.lines > STREAM_LINES;
      if (round === 0 && streamed && opts.onCreated !== undefined && diff.stats.recreated === 0) {
        // Every set the script names exists before its members go in, so that whatever needs
        // only their names (the iptables chains a pass stages) can load while they fill.
        if (diff.creates.length === 0 || (await this.createFirst(diff.creates))) opts.onCreated();
        commands += diff.creates.length > 0 ? 1 : 0;
      }
      const viaSession = round === 0 && kept && !streamed;
      const usual = async (): Promise<RestoreOutcome> => {
        // A big script (a round after a refusal, or one that cannot be cut in two) in runs.
        if (streamed) return this.restoreInRuns(diff, onWrite);
        const running = run('ipset', ['restore'], {
          netns: this.netns,
          input: diff.script,
          allowFailure: true,
        });
        // A small script is handed over at once.
        if (!viaSession) onWrite?.();
        return { ...(await running), runs: 1, script: diff };
      };
      // A big script of new sets and members (a cold start) goes to tools side by side: most of
      // a restore is the tool's own parsing, which runs on another core meanwhile. A part that
      // fails leaves the rest to the next round: a fresh read, which names the refused line.
      const parts = round === 0 && streamed ? diff.split(RESTORE_PROCESSES) : undefined;
      const sideBySide = parts !== undefined && parts.length > 1;
      const res: RestoreOutcome = sideBySide
        ? await this.restoreSideBySide(parts, onWrite)
        : ((viaSession ? await this.throughSession(diff, onWrite) : undefined) ?? (await usual()));
      commands += res.runs;
      ms += performance.now() - started;
      log.debug({ netns: this.netns, lines: diff.stats.lines, tools: res.runs, ms }, 'ipset restore');
      if (res.exitCode === 0) {
        if (refused.length === 0) remember();
        return { ...diff.stats, commands: commands + (await this.dropNew(refused, before)), ms, refused };
      }
      if (sideBySide) continue;
      // The line number counts in the run that failed.
      const m = /Error in line (\d+):\s*(.*)/.exec(res.stderr);
      const set = m ? setOfLine(res.script.script, Number(m[1])) : undefined;
      if (m === null || set === undefined || !want.has(set) || round + 1 >= maxRounds)
        throw new CommandError('ipset restore', res.exitCode, res.stderr);
      refused.push({ set, reason: (m[2] ?? '').trim() });
    }
  }

  /**
   * The new sets, empty, in one restore ahead of their fill (whose create lines, with -exist, then
   * do nothing). False if the tool refused a line: the fill's own run then names it.
   */
  private async createFirst(creates: readonly string[]): Promise<boolean> {
    const started = performance.now();
    const res = await run('ipset', ['restore'], {
      netns: this.netns,
      input: `${creates.join('\n')}\n`,
      allowFailure: true,
    });
    log.debug(
      { netns: this.netns, sets: creates.length, ok: res.exitCode === 0, ms: performance.now() - started },
      'ipset create ahead of the fill',
    );
    return res.exitCode === 0;
  }

  /**
   * On: a cold start's side-by-side restores run a little below the agent's priority. On nf_tables
   * the filter table's 25,000 rules load beside the fill (staged), and that load is what the node
   * waits for last; the fill has slack.
   */
  lowerBulkPriority(on: boolean): void {
    this.bulkNice = on;
  }

  /**
   * The parts of one script side by side, each in its own line of runs (restoreInRuns); `onWrite`
   * once every line has handed over its first run's input.
   */
  private async restoreSideBySide(
    parts: readonly IpSetDiff[],
    onWrite: (() => void) | undefined,
  ): Promise<RestoreOutcome> {
    let handing = parts.length;
    const handed = () => {
      if (--handing === 0) onWrite?.();
    };
    const results = await Promise.all(
      parts.map((part) => this.restoreInRuns(part, handed, this.bulkNice ? FILL_NICE : undefined)),
    );
    const runs = results.reduce((a, r) => a + r.runs, 0);
    return { ...(results.find((r) => r.exitCode !== 0) ?? results[0]!), runs };
  }

  /**
   * A script in `ipset restore` runs of at most SETS_PER_TOOL sets each (see there), one after
   * another, streamed; `onWrite` once the first run has its input. Stops at a run that fails: its
   * line numbers count in its own script.
   */
  private async restoreInRuns(
    diff: IpSetDiff,
    onWrite: (() => void) | undefined,
    nice?: number,
  ): Promise<RestoreOutcome> {
    const chunks = diff.chunks(SETS_PER_TOOL);
    for (const [i, chunk] of chunks.entries()) {
      const res = await run('ipset', ['restore'], {
        netns: this.netns,
        input: handedOver(chunk.pieces(), i === 0 ? onWrite : undefined),
        allowFailure: true,
        ...(nice !== undefined ? { nice } : {}),
      });
      if (res.exitCode !== 0)
        return { exitCode: res.exitCode, stderr: res.stderr, runs: i + 1, script: chunk };
    }
    return { exitCode: 0, stderr: '', runs: chunks.length, script: diff };
  }

  /**
   * Write a members-only block through the kept `ipset restore`. Undefined: not known to have
   * landed there (no session, or it refused the block and ended): write it the usual way.
   */
  private async throughSession(
    diff: IpSetDiff,
    onWrite: (() => void) | undefined,
  ): Promise<RestoreOutcome | undefined> {
    const writing = this.session.write(diff.script);
    onWrite?.();
    const out = await writing;
    // Refused, or unsure whether (part of) it landed: every line is an add or del with -exist, so
    // writing the whole block again the usual way is right either way, and names any refused line.
    return out.result === 'landed' ? { exitCode: 0, stderr: '', runs: 1, script: diff } : undefined;
  }

  /** End the kept `ipset restore`. */
  close(): void {
    this.session.end();
  }

  /**
   * Destroy owned sets not in `keep`. Call after iptables stopped referencing them: a set the
   * kernel still holds is reported in `inUse` and left for the next call.
   */
  async destroyStale(
    keep: ReadonlySet<string>,
    opts: { reuseLastWrite?: boolean } = {},
  ): Promise<IpSetDestroyStats> {
    const names =
      opts.reuseLastWrite && this.known
        ? [...this.known.keys()]
        : (await run('ipset', ['list', '-n'], { netns: this.netns })).stdout.split('\n').map((l) => l.trim());
    const pending = names.filter((n) => n !== '' && isOwnedIpSet(n) && !keep.has(n));
    try {
      return await this.destroy(pending);
    } catch (e) {
      this.known = undefined;
      throw e;
    }
  }

  private async destroy(names: string[]): Promise<IpSetDestroyStats> {
    const stats = await this.destroyOnce(names);
    // The kernel lets go of a set some moments after the last rule naming it is deleted (nf_tables
    // frees deleted rules in deferred work): a set still held right after our own table write is
    // tried again shortly, not left until some later removal.
    for (const wait of IN_USE_RETRY_MS) {
      if (stats.inUse.length === 0) break;
      await new Promise((r) => setTimeout(r, wait));
      const again = await this.destroyOnce(stats.inUse);
      stats.destroyed.push(...again.destroyed);
      stats.inUse = again.inUse;
      stats.commands += again.commands;
      stats.ms += again.ms;
    }
    return stats;
  }

  private async destroyOnce(names: string[]): Promise<IpSetDestroyStats> {
    let pending = names;
    const stats: IpSetDestroyStats = { destroyed: [], inUse: [], commands: 0, ms: 0 };
    // One restore destroys them all. The tool stops at the first failing line (and reports its
    // number); the lines before it took effect, so skip the failing set and go on with the rest.
    while (pending.length > 0) {
      const started = performance.now();
      const res = await run('ipset', ['restore'], {
        netns: this.netns,
        input: `${pending.map((n) => `destroy ${n}`).join('\n')}\n`,
        allowFailure: true,
      });
      stats.commands++;
      stats.ms += performance.now() - started;
      if (res.exitCode === 0) {
        stats.destroyed.push(...pending);
        break;
      }
      const m = /Error in line (\d+):\s*(.*)/.exec(res.stderr);
      const failedAt = m ? Number(m[1]) - 1 : -1;
      const failed = pending[failedAt];
      if (failed === undefined || m === null)
        throw new CommandError('ipset restore', res.exitCode, res.stderr);
      stats.destroyed.push(...pending.slice(0, failedAt));
      if (IN_USE.test(m[2] ?? '')) stats.inUse.push(failed);
      else if (!GONE.test(m[2] ?? '')) throw new CommandError('ipset restore', res.exitCode, res.stderr);
      pending = pending.slice(failedAt + 1);
    }
    if (stats.commands > 0) {
      log.debug(
        { netns: this.netns, destroyed: stats.destroyed, inUse: stats.inUse, ms: stats.ms },
        'ipset destroy',
      );
    }
    for (const n of stats.destroyed) this.known?.delete(n);
    return stats;
  }

  /**
   * A refused set that did not exist before may be half-made (its create and first adds landed):
   * gone is safer than half-filled, as a rule that needs it is then refused and fails closed.
   */
  private async dropNew(
    refused: readonly { set: string }[],
    before: ReadonlyMap<string, KernelIpSet>,
  ): Promise<number> {
    const fresh = refused.filter((r) => !before.has(r.set)).map((r) => `destroy ${r.set}`);
    if (fresh.length === 0) return 0;
    await run('ipset', ['restore'], {
      netns: this.netns,
      input: `${fresh.join('\n')}\n`,
      allowFailure: true,
    });
    return 1;
  }

  private async referencedSets(): Promise<Set<string>> {
    const { stdout } = await run('ipset', ['list', '-t'], { netns: this.netns });
    const inUse = new Set<string>();
    for (const [name, head] of parseIpSetList(stdout).headers) if (head.references > 0) inUse.add(name);
    return inUse;
  }
}
