// `fedmesh status --agent HOST:PORT` as an operator runs it against an agent's health server. The
// agent is a stand-in HTTP server serving the /status shape agent/main.ts serves (a real agent needs
// a feed and a kernel; test/integration/dataplane-packets.test.ts covers the refusal itself).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { after, before, test } from 'node:test';
import { refusedPolicies } from '../../agent/main.ts';

const BIN = new URL('../../bin/fedmesh.js', import.meta.url).pathname;
let server: Server;
let port = 0;
let body: unknown = {};

before(async () => {
  server = createServer((req, res) => {
    res.writeHead(req.url === '/status' ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});
after(() => server.close());

function status(...args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, 'status', '--agent', `127.0.0.1:${port}`, ...args], {
      env: { ...process.env, FEDMESH_LOG_LEVEL: 'silent' },
    });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.on('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

test('a refused policy is named, with its reason and chains; exit code 2', async () => {
  const refused = [
    { table: 'filter', object: 'cali-pi-x', policy: 'shop/broken', reason: "Chain 'y' does not exist" },
    { table: 'filter', object: 'cali-po-x', policy: 'shop/broken', reason: "Chain 'y' does not exist" },
    { table: 'ipset', object: 'cali40n:abc', reason: 'bad member' },
  ];
  body = {
    node: 'n1',
    backend: 'nft',
    feedConnected: true,
    dataplane: { applies: 3, failures: 0, refused },
    refusedPolicies: refusedPolicies(refused),
  };
  const { code, out } = await status();
  assert.equal(code, 2);
  assert.match(out, /node: n1 {3}backend: nft/);
  assert.match(out, /policy shop\/broken: Chain 'y' does not exist \[cali-pi-x, cali-po-x\]/);
  assert.match(out, /ipset cali40n:abc: bad member/);
  const json = await status('--output', 'json');
  assert.equal(JSON.parse(json.out).refusedPolicies[0].policy, 'shop/broken');
});

test('nothing refused: says so, exit code 0', async () => {
  body = {
    node: 'n1',
    backend: 'legacy',
    feedConnected: true,
    dataplane: { applies: 1, refused: [] },
    refusedPolicies: [],
  };
  const { code, out } = await status();
  assert.equal(code, 0);
  assert.match(out, /refused by the kernel: none/);
});
