// rtnetlink events (links, addresses, routes, neighbours, bridge FDB) as a stream of parsed lines,
// so the agent repairs what someone else changed within a second instead of at the next periodic
// resync.
//
// The source is iproute2's `ip -4 -o -d monitor link address route`, `ip -4 -o monitor neigh` (ARP)
// and `ip -f bridge -o monitor neigh` (the FDB: bridge-family neighbour messages), not the `netlink`
// npm package. Measured here (100,000 route adds and deletes in a namespace, a dump request in a
// loop, the receiving process's event loop blocked 1.5 s every 3 s as a large calculation batch
// does): the package, with the 4 MiB receive buffer its notes prescribe, aborts the whole process
// on the second receive-buffer overflow ("terminate called after throwing an instance of
// 'Napi::Error'"); with a 64 KiB buffer it aborts within a second. `ip monitor` under the same
// flood reports "No buffer space available" on stderr and keeps running. An overflow means events
// were lost, so it is reported as `lost` and the caller re-reads what the events cover.
//
// `-4` keeps IPv6 noise and the bridge family out of the first stream (without it every FDB
// change is printed twice, once as a neighbour); `-d` prints a VXLAN link's VNI, local address,
// parent and port, so a changed device is seen as such; `-rcvbuf` asks for a bigger socket buffer
// (the kernel caps it at net.core.rmem_max) so that deleting vxlan.calico with 10,000 VTEPs, which
// flushes 20,000 entries at once, overflows less often. `bridge monitor` has no such option.
//
// Three streams, not one: deleting vxlan.calico with 10,000 VTEPs makes the kernel send 10,000 ARP
// and 10,000 FDB deletions within milliseconds, more than a socket buffer holds (measured: the
// monitor overflows even writing to /dev/null). Apart, the overflow costs only what its stream
// covers (a re-read of the ARP or the FDB entries), and the link events that say why arrive intact.
//
// One child process per stream, killed by pid on stop; restarted (with a `lost`, since events may
// have been missed meanwhile) if it dies.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { logger } from '../lib/log.ts';

const log = logger('kernel-events');

export type KernelObject = 'link' | 'addr' | 'route' | 'neigh' | 'fdb';

export interface KernelEvent {
  object: KernelObject;
  /** The kernel says the object is gone ("Deleted ..."). */
  deleted: boolean;
  /** The device the line names (`dev X`, or a link's own name). */
  dev?: string;
  /** A route's or neighbour's destination, a link's name, an address (CIDR), an FDB entry's MAC. */
  subject: string;
  /** An FDB entry's remote VTEP address. */
  dst?: string;
  /** A link's (or an address's link's) index: tells a device from the one that replaced it. */
  ifindex?: number;
  /** The rest of the line, for the classifier (flags such as PERMANENT, proto 80, via). */
  line: string;
}

/** What one monitor stream covers: links, addresses and routes; ARP entries; FDB entries. */
export type EventStream = 'links' | 'arp' | 'fdb';

export interface KernelEventHandlers {
  onEvent(e: KernelEvent): void;
  /** Events of this stream may have been lost (buffer overflow, monitor restarted): re-read. */
  onLost(why: string, stream: EventStream): void;
}

export interface KernelEventSource {
  start(h: KernelEventHandlers): void;
  stop(): void;
  /**
   * Stop these streams for a while (their events would only echo a bulk write of ours), until
   * `resume`; what they cover must then be re-read, since nothing of it was seen meanwhile.
   */
  pause?(streams: readonly EventStream[]): void;
  resume?(): void;
}

const ROUTE_TYPES = new Set([
  'unicast',
  'local',
  'broadcast',
  'multicast',
  'anycast',
  'unreachable',
  'prohibit',
  'throw',
  'blackhole',
]);
const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/**
 * Parses one line of `ip -o monitor` or, with `fromBridge`, of `ip -f bridge monitor neigh`
 * ("<dst> dev X lladdr <mac> ...") or `bridge monitor fdb` ("<mac> dev X dst <dst> ...").
 */
export function parseMonitorLine(raw: string, fromBridge = false): KernelEvent | undefined {
  let line = raw.trim();
  if (!line) return undefined;
  let deleted = false;
  if (line.startsWith('Deleted ')) {
    deleted = true;
    line = line.slice('Deleted '.length);
  }
  // A device deleted with 10,000 VTEPs, and its repair, bring 50,000 lines: words are found by
  // index, not by regular expression, where the line's shape allows.
  const dev = line.startsWith('dev ') ? wordAt(line, 4) : wordAfter(line, ' dev ');
  const first = wordAt(line, 0);
  if (fromBridge) {
    if (MAC.test(first))
      return { object: 'fdb', deleted, dev, subject: first, dst: wordAfter(line, ' dst '), line };
    const mac = wordAfter(line, ' lladdr ')?.toLowerCase();
    if (mac === undefined || !MAC.test(mac)) return undefined;
    return { object: 'fdb', deleted, dev, subject: mac, dst: first === 'dev' ? undefined : first, line };
  }
  if (first.endsWith(':')) {
    // Links: "4: vxlan.calico: <FLAGS> mtu ..." (the @peer suffix of veths stripped).
    const link = /^(\d+): ([^:@\s]+)(?:@\S+)?: </.exec(line);
    if (link)
      return { object: 'link', deleted, dev: link[2], subject: link[2]!, ifindex: Number(link[1]), line };
    // Addresses: "4: vxlan.calico    inet 10.0.0.1/32 scope global vxlan.calico ...".
    const addr = /^(\d+): (\S+)\s+inet6? (\S+)/.exec(line);
    if (addr)
      return { object: 'addr', deleted, dev: addr[2], subject: addr[3]!, ifindex: Number(addr[1]), line };
  }
  // With -d a route through someone's nexthop object is followed by the nexthop's details on a
  // line of its own ("nh_info id 5 ..."); our routes use none (native/iproute.ts says why).
  if (first === 'nh_info') return undefined;
  // Neighbours carry lladdr or a NUD state; routes carry via/proto/scope/src or a bare dev.
  if (line.includes(' lladdr ') || NUD_AT_END.test(line)) {
    return { object: 'neigh', deleted, dev, subject: first, line };
  }
  if (dev !== undefined) {
    // With -d a route line starts with its type ("unicast 10.20.0.0/26 via ...").
    const dst = ROUTE_TYPES.has(first) ? wordAt(line, first.length + 1) : first;
    // `ip monitor` prints a host route without its /32; routes are compared as CIDRs.
    const subject = dst.includes('/') || dst.includes(':') ? dst : `${dst}/32`;
    return { object: 'route', deleted, dev, subject, line };
  }
  return undefined;
}

const NUD_AT_END = /\s(?:FAILED|INCOMPLETE|STALE|REACHABLE|DELAY|PROBE|PERMANENT|NOARP)\s*$/;

/** The word starting at `start` (up to the next space or tab). */
function wordAt(line: string, start: number): string {
  let end = start;
  while (end < line.length && line.charCodeAt(end) !== 32 && line.charCodeAt(end) !== 9) end++;
  return line.slice(start, end);
}

/** The word after the first `key` (spaces included, as in ' dev ') in `line`. */
export function wordAfter(line: string, key: string): string | undefined {
  const i = line.indexOf(key);
  return i < 0 ? undefined : wordAt(line, i + key.length);
}

interface Monitor {
  stream: EventStream;
  paused?: boolean;
  cmd: string;
  args: string[];
  bridge: boolean;
  child?: ChildProcess;
}

/** Socket receive buffer asked of each monitor (bytes; the kernel caps it at net.core.rmem_max). */
const RCVBUF = 8 << 20;

/** The three `ip monitor` streams, in this process's namespace or in `netns`. */
export class IpMonitorSource implements KernelEventSource {
  private readonly monitors: Monitor[];
  private handlers?: KernelEventHandlers;
  private stopped = false;
  private restartTimer?: NodeJS.Timeout;

  constructor(netns?: string) {
    const common = [...(netns ? ['-n', netns] : []), '-rcvbuf', String(RCVBUF), '-o'];
    this.monitors = [
      {
        stream: 'links',
        cmd: 'ip',
        args: [...common, '-4', '-d', 'monitor', 'link', 'address', 'route'],
        bridge: false,
      },
      { stream: 'arp', cmd: 'ip', args: [...common, '-4', 'monitor', 'neigh'], bridge: false },
      { stream: 'fdb', cmd: 'ip', args: [...common, '-f', 'bridge', 'monitor', 'neigh'], bridge: true },
    ];
  }

  /** The monitor processes' ids (for measuring what they cost). */
  pids(): number[] {
    return this.monitors.flatMap((m) => (m.child?.pid === undefined ? [] : [m.child.pid]));
  }

  start(h: KernelEventHandlers): void {
    this.handlers = h;
    this.stopped = false;
    for (const m of this.monitors) this.spawn(m);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    for (const m of this.monitors) this.end(m);
  }

  /** The stream's monitor ended (its socket closed: the kernel then builds no events for it). */
  pause(streams: readonly EventStream[]): void {
    for (const m of this.monitors) {
      if (!streams.includes(m.stream) || m.paused) continue;
      m.paused = true;
      this.end(m);
    }
  }

  resume(): void {
    for (const m of this.monitors) {
      if (!m.paused) continue;
      m.paused = false;
      if (!this.stopped) this.spawn(m);
    }
  }

  /** Kills the monitor by its pid, with no restart. */
  private end(m: Monitor): void {
    m.child?.removeAllListeners('exit');
    if (m.child?.pid !== undefined) {
      try {
        process.kill(m.child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    m.child = undefined;
  }

  private spawn(m: Monitor): void {
    const child = spawn(m.cmd, m.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    m.child = child;
    createInterface({ input: child.stdout! }).on('line', (l) => {
      const e = parseMonitorLine(l, m.bridge);
      if (e) this.handlers?.onEvent(e);
    });
    createInterface({ input: child.stderr! }).on('line', (l) => {
      // "netlink receive error No buffer space available (105)": events were dropped.
      log.warn(
        { cmd: m.cmd, msg: l.slice(0, 200) },
        'kernel event monitor reports an error; re-reading the kernel',
      );
      this.handlers?.onLost(l.slice(0, 200), m.stream);
    });
    child.on('error', (err) =>
      log.error({ cmd: m.cmd, err: err.message }, 'kernel event monitor failed to start'),
    );
    child.on('exit', (code, signal) => {
      if (this.stopped || m.child !== child) return;
      m.child = undefined;
      log.warn({ cmd: m.cmd, code, signal }, 'kernel event monitor exited; restarting');
      this.handlers?.onLost(`${m.cmd} monitor exited`, m.stream);
      this.restartTimer = setTimeout(() => {
        if (!this.stopped && !m.paused) this.spawn(m);
      }, 500);
    });
  }
}
