// Liveness and readiness over HTTP for the kubelet's probes (`/liveness`, `/readiness`), plus a
// JSON `/status` for people.
import { createServer, type Server } from 'node:http';
import { logger } from './log.ts';
import { registry } from './metrics.ts';

const log = logger('health');

export interface HealthSource {
  live(): boolean;
  ready(): boolean;
  status(): unknown;
}

export function parseHostPort(s: string, flag: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(s);
  if (!m) throw new Error(`${flag} ${s}: expected HOST:PORT`);
  return { host: m[1] || '0.0.0.0', port: Number(m[2]) };
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
    server.listen(port, host, () => resolve());
  });
  server.unref();
  log.info({ listen }, 'health server listening');
  return server;
}
