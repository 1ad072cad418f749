// A real etcd (Debian's etcd-server) for tests: started on free loopback ports with its own data
// directory, stopped and restarted by its pid (same ports, same data), always killed and removed
// when the test ends, even if the test process dies first. Also: a throw-away CA with server and
// client certificates (openssl), and a TCP proxy a test can cut to play a network partition.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { makeCa, makeLeaf } from '../helpers/certs.ts';

/** Every etcd pid any test in this process started and has not reaped yet. */
const live = new Set<number>();
process.once('exit', () => {
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

export function hasEtcd(): boolean {
  try {
    execFileSync('etcd', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

export interface TestCa {
  dir: string;
  caFile: string;
  /** PEM texts. */
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** Paths of the client's certificate and key. */
  clientCertFile: string;
  clientKeyFile: string;
  serverCertFile: string;
  serverKeyFile: string;
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, in a temporary directory. */
export function makeTestCa(t: Pick<TestContext, 'after'>): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-ca-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ca = makeCa(dir, 'ca');
  const server = makeLeaf(ca, 'server', 'etcd', 'serverAuth', ['IP:127.0.0.1', 'DNS:localhost']);
  const client = makeLeaf(ca, 'client', 'fedmesh', 'clientAuth');
  const read = (f: string) => readFileSync(f, 'utf8');
  return {
    dir,
    caFile: ca.crt,
    ca: read(ca.crt),
    serverCert: read(server.crt),
    serverKey: read(server.key),
    clientCert: read(client.crt),
    clientKey: read(client.key),
    clientCertFile: client.crt,
    clientKeyFile: client.key,
    serverCertFile: server.crt,
    serverKeyFile: server.key,
  };
}

export interface EtcdOptions {
  /** Serve clients over TLS with this CA's server certificate, and require client certificates. */
  tls?: TestCa;
}

export class TestEtcd {
  readonly endpoint: string;
  private child?: ChildProcess;
  private output = '';

  readonly clientPort: number;

  private constructor(
    readonly dataDir: string,
    clientPort: number,
    private readonly peerPort: number,
    private readonly opts: EtcdOptions,
  ) {
    this.clientPort = clientPort;
    this.endpoint = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${clientPort}`;
  }

  /** Start an etcd that is stopped (and its directory removed) when `t` ends. */
  static async start(t: Pick<TestContext, 'after'>, opts: EtcdOptions = {}): Promise<TestEtcd> {
    for (let attempt = 0; ; attempt++) {
      const dataDir = mkdtempSync(join(tmpdir(), 'fedmesh-etcd-'));
      const etcd = new TestEtcd(dataDir, await freePort(), await freePort(), opts);
      try {
        await etcd.resume();
        t.after(() => etcd.destroy());
        return etcd;
      } catch (e) {
        await etcd.destroy();
        // Another process may have taken a port between the probe and etcd's bind: try new ones.
        if (attempt >= 2) throw e;
      }
    }
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** (Re)start on the same ports with the same data; resolves when it serves clients. */
  async resume(): Promise<void> {
    if (this.child) return;
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const tls = this.opts.tls;
    const args = [
      '--name',
      'test',
      '--data-dir',
      this.dataDir,
      '--listen-client-urls',
      this.endpoint,
      '--advertise-client-urls',
      this.endpoint,
      '--listen-peer-urls',
      peer,
      '--initial-advertise-peer-urls',
      peer,
      '--initial-cluster',
      `test=${peer}`,
      ...(tls
        ? [
            '--cert-file',
            tls.serverCertFile,
            '--key-file',
            tls.serverKeyFile,
            '--trusted-ca-file',
            tls.caFile,
            '--client-cert-auth',
          ]
        : []),
    ];
    this.output = '';
    const child = spawn('etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid === undefined) throw new Error('could not start etcd');
    this.child = child;
    live.add(child.pid);
    const onData = (b: Buffer) => {
      this.output = (this.output + b.toString()).slice(-20_000);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) =>
        reject(new Error(`etcd exited (${code}) before serving:\n${this.output.slice(-2000)}`)),
      ),
    );
    const ready = (async () => {
      const deadline = Date.now() + 20_000;
      while (!/ready to serve client requests/.test(this.output)) {
        if (Date.now() > deadline) throw new Error(`etcd did not become ready:\n${this.output.slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      await Promise.race([ready, exited]);
    } catch (e) {
      await this.stop();
      throw e;
    }
    exited.catch(() => undefined);
  }

  /** Kill etcd (by its pid) and wait until it is gone; the data stays for resume(). */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child?.pid) return;
    this.child = undefined;
    const gone =
      child.exitCode !== null || child.signalCode !== null
        ? Promise.resolve()
        : new Promise<void>((r) => child.once('exit', () => r()));
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await gone;
    live.delete(child.pid);
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/**
 * A TCP proxy in front of a server. cut() drops every connection and refuses new ones (as a
 * partition would, but at once); restore() lets them through again.
 */
export class CutProxy {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private open = true;
  port = 0;

  constructor(private readonly targetPort: number) {}

  static async start(t: Pick<TestContext, 'after'>, targetPort: number): Promise<CutProxy> {
    const p = new CutProxy(targetPort);
    p.server = createServer((client) => p.accept(client));
    await new Promise<void>((r) => p.server?.listen(0, '127.0.0.1', r));
    p.port = (p.server.address() as { port: number }).port;
    t.after(() => p.close());
    return p;
  }

  private accept(client: Socket): void {
    if (!this.open) {
      client.destroy();
      return;
    }
    const upstream = new Socket();
    upstream.connect(this.targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  cut(): void {
    this.open = false;
    for (const s of this.sockets) s.destroy();
  }

  restore(): void {
    this.open = true;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server?.close(r));
  }
}
