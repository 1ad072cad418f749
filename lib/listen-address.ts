// Where a server listens, from a flag value. One grammar for the feed (`--listen`) and the health
// server (`--health-listen`), so `:PORT` means the same thing everywhere:
//   unix:PATH    a Unix socket (feed only)
//   HOST:PORT    that address (an IPv6 literal in brackets: [::1]:5473)
//   :PORT        every address of the host, IPv4 and IPv6 (as Go's net.Listen reads ":PORT")
//   PORT         loopback only (127.0.0.1): the default for health and metrics
export type ListenAddress =
  | { kind: 'unix'; path: string }
  | {
      kind: 'tcp';
      /** undefined: every address of the host. */
      host: string | undefined;
      port: number;
    };

export function parseListenAddress(
  value: string,
  flag: string,
  opts: { unix?: boolean } = {},
): ListenAddress {
  const bad = (why: string) =>
    new Error(
      `${flag} ${JSON.stringify(value.slice(0, 100))}: ${why}; expected HOST:PORT, :PORT (every address), PORT (loopback)${opts.unix ? ' or unix:PATH' : ''}`,
    );
  if (value.startsWith('unix:')) {
    if (!opts.unix) throw bad('a Unix socket is not supported here');
    const path = value.slice('unix:'.length);
    if (path === '') throw bad('no socket path after unix:');
    return { kind: 'unix', path };
  }
  const m = /^(?:(\[[0-9A-Fa-f:.]+\]|[^:[\]\s]*):)?(\d{1,5})$/.exec(value);
  if (!m) throw bad('not an address');
  const port = Number(m[2]);
  if (port > 65535) throw bad(`port ${port} is out of range`);
  if (m[1] === undefined) return { kind: 'tcp', host: '127.0.0.1', port };
  if (m[1] === '') return { kind: 'tcp', host: undefined, port };
  return { kind: 'tcp', host: m[1].startsWith('[') ? m[1].slice(1, -1) : m[1], port };
}

/** For logs and errors: what the address means, in words. */
export function describeListenAddress(a: ListenAddress): string {
  if (a.kind === 'unix') return `unix socket ${a.path}`;
  if (a.host === undefined) return `every address (IPv4 and IPv6), port ${a.port}`;
  return `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}
