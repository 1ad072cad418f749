// The feed's security, with real TLS over TCP on loopback and certificates made by openssl:
// mutual TLS refuses a client without a certificate, with one from another CA, or with a CN that
// --tls-client-cn does not match; the agent refuses a syncer whose certificate lacks the server
// name; certificates rotate under a running syncer and agent; plain TCP needs --insecure; a Unix
// socket is 0660; `--listen :PORT` means every address; an over-long node name is refused.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect } from 'node:tls';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import type { ClientTlsConfig } from '../../lib/feed-tls.ts';
import {
  ClientHelloSchema,
  FEED_SYNC_PATH,
  feedServiceDefinition,
  type ServerMessage,
} from '../../proto/service.ts';
import { FeedCache } from '../../syncer/feed-cache.ts';
import { type Ca, install, type Leaf, makeCa, makeLeaf } from '../helpers/certs.ts';
import { profile } from '../helpers/feed-builders.ts';

process.env.FEDMESH_LOG_LEVEL ??= 'silent';
const { FeedServer } = await import('../../syncer/server.ts');
const { FeedClient } = await import('../../agent/feed/client.ts');
const { clientIdentityPattern } = await import('../../lib/feed-tls.ts');

const ROOT = new URL('../..', import.meta.url).pathname;
const BIN = join(ROOT, 'bin/fedmesh.js');
const SERVER_NAME = 'fedmesh-syncer.test';
const AGENT_CN = 'fedmesh-agent';

// ---------------------------------------------------------------------------------------------

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function syncedCache(...keys: string[]): FeedCache {
  const cache = new FeedCache();
  for (const k of keys) cache.set(profile(k, {}));
  cache.markInSync();
  return cache;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

interface Pki {
  ca: Ca;
  server: Leaf;
  agent: Leaf;
}

function pki(dir: string, name: string): Pki {
  const ca = makeCa(dir, name);
  return {
    ca,
    server: makeLeaf(ca, `${name}-server`, 'fedmesh-syncer', 'serverAuth', [`DNS:${SERVER_NAME}`]),
    agent: makeLeaf(ca, `${name}-agent`, AGENT_CN, 'clientAuth'),
  };
}

/** A FeedServer on 127.0.0.1 with mutual TLS from `p`, its files in their own place. */
async function tlsServer(t: TestContext, dir: string, p: Pki, cache: FeedCache, clientCn = AGENT_CN) {
  const files = {
    caFile: join(dir, 'server-ca.crt'),
    certFile: join(dir, 'server.crt'),
    keyFile: join(dir, 'server.key'),
  };
  install(p.ca, p.server, files);
  const server = new FeedServer({
    cluster: 'a',
    cache,
    listen: '127.0.0.1:0',
    tls: { ...files, clientIdentity: clientIdentityPattern(clientCn) },
    tlsReloadMs: 100,
    heartbeatMs: 60_000,
  });
  const target = await server.start();
  t.after(() => server.stop());
  return { server, target, files };
}

/** One Sync call with the given credentials: the first message's case, or the error. */
async function trySync(
  target: string,
  credentials: grpc.ChannelCredentials,
  nodeName = 'node-1',
  serverName = SERVER_NAME,
): Promise<{ first?: string; code?: grpc.status; details?: string }> {
  const client = new grpc.Client(target, credentials, { 'grpc.ssl_target_name_override': serverName });
  const def = feedServiceDefinition.sync;
  try {
    return await new Promise((resolve) => {
      const call = client.makeServerStreamRequest(
        FEED_SYNC_PATH,
        def.requestSerialize,
        def.responseDeserialize,
        create(ClientHelloSchema, { nodeName, version: 'test' }),
        { deadline: Date.now() + 5000 },
      );
      call.on('data', (m: ServerMessage) => {
        resolve({ first: m.payload.case ?? 'none' });
        call.cancel();
      });
      call.on('error', (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details }));
    });
  } finally {
    client.close();
  }
}

const creds = (ca: Ca | null, leaf?: Leaf) =>
  grpc.credentials.createSsl(
    ca ? readFileSync(ca.crt) : null,
    leaf ? readFileSync(leaf.key) : null,
    leaf ? readFileSync(leaf.crt) : null,
  );

/** The SHA-256 fingerprint of the certificate a new TLS connection to `target` is shown. */
function servedFingerprint(target: string, p: Pki, leaf: Leaf): Promise<string> {
  const [host, port] = [
    target.slice(0, target.lastIndexOf(':')),
    Number(target.slice(target.lastIndexOf(':') + 1)),
  ];
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      host,
      port,
      servername: SERVER_NAME,
      ca: readFileSync(p.ca.crt),
      cert: readFileSync(leaf.crt),
      key: readFileSync(leaf.key),
      ALPNProtocols: ['h2'],
      rejectUnauthorized: false,
    });
    s.once('secureConnect', () => {
      resolve(s.getPeerCertificate().fingerprint256);
      s.destroy();
    });
    s.once('error', reject);
  });
}

function fingerprintOf(crt: string): string {
  return execFileSync('openssl', ['x509', '-in', crt, '-noout', '-fingerprint', '-sha256'], {
    encoding: 'utf8',
  })
    .trim()
    .replace(/^.*=/, '');
}

// ---------------------------------------------------------------------------------------------

describe('feed TLS: who may read the feed', () => {
  test('refused without a client certificate, with one from another CA, or with a CN --tls-client-cn does not match; accepted with a good one', async (t) => {
    const dir = tempDir(t);
    const good = pki(dir, 'ca1');
    const other = pki(dir, 'ca2');
    const intruder = makeLeaf(good.ca, 'intruder', 'fedmesh-agent-impostor', 'clientAuth');
    const { target } = await tlsServer(t, dir, good, syncedCache('p1'));

    const none = await trySync(target, creds(good.ca));
    assert.equal(none.code, grpc.status.UNAVAILABLE, `no client certificate: ${JSON.stringify(none)}`);
    assert.equal(none.first, undefined);

    const foreign = await trySync(target, creds(good.ca, other.agent));
    assert.equal(foreign.code, grpc.status.UNAVAILABLE, `another CA: ${JSON.stringify(foreign)}`);

    // Signed by the right CA, but its CN only contains the allowed one: the match is anchored.
    const wrongCn = await trySync(target, creds(good.ca, intruder));
    assert.equal(wrongCn.code, grpc.status.PERMISSION_DENIED, JSON.stringify(wrongCn));
    assert.match(wrongCn.details ?? '', /--tls-client-cn/);

    const ok = await trySync(target, creds(good.ca, good.agent));
    assert.deepEqual(ok, { first: 'hello' });
  });

  test('scripts/make-feed-certs.sh: its certificates work with the names the manifests use', async (t) => {
    const dir = tempDir(t);
    const out = join(dir, 'certs');
    execFileSync('bash', [join(ROOT, 'scripts/make-feed-certs.sh'), out], { stdio: 'ignore' });
    const ca: Ca = { dir: out, name: 'ca', crt: join(out, 'ca.crt'), key: join(out, 'ca.key') };
    const p: Pki = {
      ca,
      server: { crt: join(out, 'syncer.crt'), key: join(out, 'syncer.key') },
      agent: { crt: join(out, 'agent.crt'), key: join(out, 'agent.key') },
    };
    assert.equal((statSync(p.agent.key).mode & 0o777).toString(8), '600');
    // As in daemonset/: --tls-client-cn fedmesh-agent, --tls-server-name the Service's DNS name.
    const { target } = await tlsServer(t, dir, p, syncedCache('p1'), 'fedmesh-agent');
    const name = 'fedmesh-syncer.fedmesh-system.svc';
    assert.deepEqual(await trySync(target, creds(ca, p.agent), 'node-1', name), { first: 'hello' });
    assert.equal(
      (await trySync(target, creds(ca, p.agent), 'node-1', 'fedmesh-syncer.other')).code,
      grpc.status.UNAVAILABLE,
    );
    const secrets = readFileSync(join(out, 'secrets.yaml'), 'utf8');
    for (const s of [
      'name: fedmesh-syncer-tls',
      'name: fedmesh-agent-tls',
      'ca.crt:',
      'tls.crt:',
      'tls.key:',
    ])
      assert.ok(secrets.includes(s), s);
  });

  test('a URI SAN may match --tls-client-cn instead of the CN', async (t) => {
    const dir = tempDir(t);
    const p = pki(dir, 'ca1');
    const spiffe = makeLeaf(p.ca, 'spiffe', 'node-7', 'clientAuth', ['URI:spiffe://fedmesh/agent']);
    const { target } = await tlsServer(t, dir, p, syncedCache('p1'), 'spiffe://fedmesh/agent');
    assert.deepEqual(await trySync(target, creds(p.ca, spiffe)), { first: 'hello' });
    assert.equal((await trySync(target, creds(p.ca, p.agent))).code, grpc.status.PERMISSION_DENIED);
  });

  test('the agent refuses a syncer whose certificate does not carry --tls-server-name', async (t) => {
    const dir = tempDir(t);
    const p = pki(dir, 'ca1');
    const { target } = await tlsServer(t, dir, p, syncedCache('p1'));
    const tls = (serverName: string): ClientTlsConfig => ({
      caFile: p.ca.crt,
      certFile: p.agent.crt,
      keyFile: p.agent.key,
      serverName,
    });
    const states: string[] = [];
    const wrong = new FeedClient(
      {
        target,
        nodeName: 'node-1',
        version: 'test',
        maxBackoffMs: 200,
        tls: tls('fedmesh-syncer.elsewhere'),
      },
      {
        onHello: () => states.push('hello'),
        onUpdates: () => {},
        onInSync: () => {},
        onConnectionState: (s, detail) => states.push(`${s}:${detail ?? ''}`),
      },
    );
    wrong.start();
    t.after(() => wrong.stop());
    await waitFor('a refused attempt', () => states.some((s) => s.startsWith('disconnected')));
    assert.ok(!states.includes('hello'), `no hello from a syncer with the wrong name: ${states}`);
    assert.match(states.find((s) => s.startsWith('disconnected')) ?? '', /UNAVAILABLE/);

    let hellos = 0;
    const right = new FeedClient(
      { target, nodeName: 'node-1', version: 'test', tls: tls(SERVER_NAME) },
      { onHello: () => hellos++, onUpdates: () => {}, onInSync: () => {} },
    );
    right.start();
    t.after(() => right.stop());
    await waitFor('the right name connects', () => hellos === 1);
  });

  test('certificate files caught mid-rotation (a key that does not match) keep the last good ones', async (t) => {
    const dir = tempDir(t);
    const p = pki(dir, 'ca1');
    const { target, files } = await tlsServer(t, dir, p, syncedCache('p1'));
    const other = makeLeaf(p.ca, 'other-server', 'fedmesh-syncer', 'serverAuth', [`DNS:${SERVER_NAME}`]);
    install(p.ca, { crt: other.crt, key: p.server.key }, files); // new certificate, old key
    await sleep(400); // several reload periods
    assert.equal(await servedFingerprint(target, p, p.agent), fingerprintOf(p.server.crt));
    assert.deepEqual(await trySync(target, creds(p.ca, p.agent)), { first: 'hello' });
    install(p.ca, other, files); // the key arrives: now it changes
    let served = '';
    for (let i = 0; i < 50 && served !== fingerprintOf(other.crt); i++) {
      await sleep(50);
      served = await servedFingerprint(target, p, p.agent);
    }
    assert.equal(served, fingerprintOf(other.crt));
  });

  test('`fedmesh status` over mutual TLS, its settings from FEDMESH_* variables', async (t) => {
    const dir = tempDir(t);
    const p = pki(dir, 'ca1');
    const { target } = await tlsServer(t, dir, p, syncedCache('p1', 'p2'));
    const run = (env: Record<string, string>) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [BIN, 'status', '--feed', target, '--output', 'json'], {
          env: { ...process.env, FEDMESH_LOG_LEVEL: 'silent', ...env },
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (b: Buffer) => {
          stdout += b.toString();
        });
        child.stderr.on('data', (b: Buffer) => {
          stderr += b.toString();
        });
        child.on('exit', (code) => resolve({ code, stdout, stderr }));
      });
    const tls = {
      FEDMESH_TLS_CA_FILE: p.ca.crt,
      FEDMESH_TLS_CERT_FILE: p.agent.crt,
      FEDMESH_TLS_KEY_FILE: p.agent.key,
      FEDMESH_TLS_SERVER_NAME: SERVER_NAME,
      FEDMESH_TIMEOUT: '10s',
    };
    const ok = await run(tls);
    assert.equal(ok.code, 0, ok.stderr);
    const out = JSON.parse(ok.stdout) as {
      cluster: string;
      inSync: boolean;
      feed: Record<string, Record<string, number>>;
    };
    assert.equal(out.cluster, 'a');
    assert.equal(out.inSync, true);
    assert.equal(out.feed.a?.PROFILE, 2);
    // The same client, told to expect another name: no answer from this syncer.
    const wrong = await run({
      ...tls,
      FEDMESH_TLS_SERVER_NAME: 'fedmesh-syncer.elsewhere',
      FEDMESH_TIMEOUT: '2s',
    });
    assert.equal(wrong.code, 1);
    assert.equal((JSON.parse(wrong.stdout) as { inSync: boolean }).inSync, false);
  });

  test('certificates rotated under a running syncer and agent: new connections use them, the agent reconnects', async (t) => {
    const dir = tempDir(t);
    const old = pki(dir, 'old');
    const cache = syncedCache('p1');
    const { server, target, files: serverFiles } = await tlsServer(t, dir, old, cache);
    const agentFiles = {
      caFile: join(dir, 'agent-ca.crt'),
      certFile: join(dir, 'agent.crt'),
      keyFile: join(dir, 'agent.key'),
    };
    install(old.ca, old.agent, agentFiles);
    let hellos = 0;
    const seen = new Set<string>();
    const client = new FeedClient(
      {
        target,
        nodeName: 'node-1',
        version: 'test',
        maxBackoffMs: 300,
        tls: { ...agentFiles, serverName: SERVER_NAME },
      },
      {
        onHello: () => hellos++,
        onUpdates: (us) => {
          for (const u of us) seen.add(u.key);
        },
        onInSync: () => {},
      },
    );
    client.start();
    t.after(() => client.stop());
    await waitFor('connected with the old certificates', () => hellos === 1 && seen.has('p1'));
    assert.equal(await servedFingerprint(target, old, old.agent), fingerprintOf(old.server.crt));

    // A new CA altogether (the strictest rotation): both ends must reload everything.
    const fresh = pki(dir, 'new');
    install(fresh.ca, fresh.server, serverFiles);
    install(fresh.ca, fresh.agent, agentFiles);
    const want = fingerprintOf(fresh.server.crt);
    let served = '';
    for (let i = 0; i < 50 && served !== want; i++) {
      await sleep(50);
      served = await servedFingerprint(target, fresh, fresh.agent).catch(() => '');
    }
    assert.equal(served, want, 'new connections are shown the new certificate, without a restart');
    assert.equal(
      (await trySync(target, creds(old.ca, old.agent))).code,
      grpc.status.UNAVAILABLE,
      'a client of the old CA is refused now',
    );

    // The running agent's connection was made with the old certificates and stays up; when it
    // drops (here: the syncer disconnects everyone, as a restart or network blip would) the
    // agent reconnects with its new files and gets the deltas it missed.
    cache.set(profile('p2', {}));
    await waitFor('the delta over the old connection', () => seen.has('p2'));
    server.disconnectAll();
    cache.set(profile('p3', {}));
    await waitFor('reconnected with the new certificates', () => hellos === 2 && seen.has('p3'), 8000);
  });
});

describe('feed transport: plain TCP, Unix sockets, addresses, hellos', () => {
  test('plain TCP is refused without --insecure, with a clear error, by the server and by `fedmesh syncer`', async (t) => {
    const dir = tempDir(t);
    const server = new FeedServer({ cluster: 'a', cache: syncedCache(), listen: '127.0.0.1:0' });
    await assert.rejects(server.start(), /TCP feed needs TLS .*or --insecure/);
    const r = spawnSync(
      process.execPath,
      [BIN, 'syncer', '--cluster', 'a', '--datastore', `file:${dir}`, '--listen', '127.0.0.1:0'],
      { encoding: 'utf8', timeout: 30_000, env: { ...process.env, FEDMESH_LOG_LEVEL: 'silent' } },
    );
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /--listen 127\.0\.0\.1:0 is TCP: give --tls-ca-file.*or --insecure/);
    const agent = spawnSync(process.execPath, [BIN, 'agent', '--node', 'n1', '--feed', '127.0.0.1:5473'], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, FEDMESH_LOG_LEVEL: 'silent' },
    });
    assert.equal(agent.status, 1, agent.stderr);
    assert.match(agent.stderr, /agent: --feed 127\.0\.0\.1:5473 is TCP: give --tls-ca-file.*or --insecure/);

    const insecure = new FeedServer({
      cluster: 'a',
      cache: syncedCache('p1'),
      listen: '127.0.0.1:0',
      insecure: true,
    });
    const target = await insecure.start();
    t.after(() => insecure.stop());
    assert.deepEqual(await trySync(target, grpc.credentials.createInsecure()), { first: 'hello' });
  });

  test('a Unix socket is created with mode 0660 and serves without TLS', async (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'feed.sock');
    const server = new FeedServer({ cluster: 'a', cache: syncedCache('p1'), listen: `unix:${path}` });
    const target = await server.start();
    t.after(() => server.stop());
    const st = statSync(path);
    assert.ok(st.isSocket());
    assert.equal((st.mode & 0o777).toString(8), '660');
    assert.deepEqual(await trySync(target, grpc.credentials.createInsecure()), { first: 'hello' });
  });

  test('--listen :PORT listens on every address (IPv4 and IPv6 loopback both answer)', async (t) => {
    const probe = new FeedServer({ cluster: 'a', cache: syncedCache(), listen: ':0', insecure: true });
    const first = await probe.start();
    const port = Number(first.slice(first.lastIndexOf(':') + 1));
    await probe.stop();
    const server = new FeedServer({
      cluster: 'a',
      cache: syncedCache('p1'),
      listen: `:${port}`,
      insecure: true,
    });
    const target = await server.start();
    t.after(() => server.stop());
    assert.equal(target, `127.0.0.1:${port}`);
    const insecure = grpc.credentials.createInsecure();
    assert.deepEqual(await trySync(`127.0.0.1:${port}`, insecure), { first: 'hello' });
    assert.deepEqual(await trySync(`[::1]:${port}`, insecure), { first: 'hello' });
  });

  test('a node name longer than a DNS name is refused, clearly, and never logged whole', async (t) => {
    const dir = tempDir(t);
    const server = new FeedServer({
      cluster: 'a',
      cache: syncedCache('p1'),
      listen: `unix:${join(dir, 's.sock')}`,
    });
    const target = await server.start();
    t.after(() => server.stop());
    const insecure = grpc.credentials.createInsecure();
    const long = await trySync(target, insecure, 'n'.repeat(300));
    assert.equal(long.code, grpc.status.INVALID_ARGUMENT);
    assert.match(long.details ?? '', /node name of 300 bytes is longer than 253/);
    assert.equal((await trySync(target, insecure, 'bad name\u001b[31m')).code, grpc.status.INVALID_ARGUMENT);
    assert.equal((await trySync(target, insecure, '')).code, grpc.status.INVALID_ARGUMENT);
    // 3 MB: refused by the transport before it is even decoded.
    const huge = await trySync(target, insecure, 'x'.repeat(3_000_000));
    assert.equal(huge.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(server.clientCount, 0);
    assert.deepEqual(await trySync(target, insecure, 'node-1.example.com'), { first: 'hello' });
  });

  test('`fedmesh syncer`: the refusal of a long node name is logged at warn, truncated', async (t) => {
    const dir = tempDir(t);
    const socket = join(dir, 's.sock');
    const child = spawn(
      process.execPath,
      [BIN, 'syncer', '--cluster', 'a', '--datastore', `file:${dir}`, '--listen', `unix:${socket}`],
      { env: { ...process.env, FEDMESH_LOG_LEVEL: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    t.after(() => child.kill('SIGKILL'));
    await waitFor('the syncer to listen', () => /feed server listening/.test(stderr), 30_000);
    const name = `${'m'.repeat(5000)}-end`;
    const r = await trySync(`unix:${socket}`, grpc.credentials.createInsecure(), name);
    assert.equal(r.code, grpc.status.INVALID_ARGUMENT);
    await waitFor('the refusal in the log', () => /agent hello refused/.test(stderr));
    const line = stderr.split('\n').find((l) => l.includes('agent hello refused')) ?? '';
    assert.equal(JSON.parse(line).level, 40);
    assert.ok(line.length < 1000, `a ${line.length}-character log line`);
    assert.ok(!line.includes('-end'), 'the name is truncated');
  });
});
