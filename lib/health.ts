// Liveness and readiness over HTTP for the kubelet's probes (`/liveness`, `/readiness`), plus a
// JSON `/status` for people. Loopback unless the operator names another address: `/status` and
// `/metrics` describe the whole mesh, and nothing but the kubelet and a local scraper needs them.
import { createServer, type Server } from 'node:http';
import { describeListenAddress, parseListenAddress } from './listen-address.ts';
import { logger } from './log.ts';
import { registry } from './metrics.ts';

const log = logger('health');

export interface HealthSource {
  live(): boolean;
  ready(): boolean;
  status(): unknown;
}

/** `--health-listen`: PORT (loopback), HOST:PORT, or :PORT (every address). */
export function parseHostPort(s: string, flag: string): { host: string | undefined; port: number } {
  const a = parseListenAddress(s, flag);
  if (a.kind !== 'tcp') throw new Error(`${flag} ${s}: expected HOST:PORT`);
  return { host: a.host, port: a.port };
}

export async function startHealthServer(listen: string, src: HealthSource): Promise<Server> {
  const { host, port } = parseHostPort(listen, '--health-listen');
  const server = createServer((req, res) => {
    const send = (ok: boolean, body: unknown) => {
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.url === '/liveness') send(src.live(), { live: src.live() });
    else if (req.url === '/readiness') send(src.ready(), { ready: src.ready() });
    else if (req.url === '/status') send(true, src.status());
    else if (req.url === '/metrics') {
      void registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        },
        (e: Error) => send(false, { error: e.message }),
      );
    } else send(false, { error: 'not found' });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // host undefined: Node listens on every address (:: dual-stack, or 0.0.0.0 without IPv6).
    server.listen(port, host, () => resolve());
  });
  server.unref();
  log.info({ listen, on: describeListenAddress({ kind: 'tcp', host, port }) }, 'health server listening');
  return server;
}
