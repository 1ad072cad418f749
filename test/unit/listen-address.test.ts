// The listen grammar shared by --listen and --health-listen: `:PORT` is every address, a bare
// PORT is loopback, and bad values are refused naming the flag (not grpc-js's "[object Object]").
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseHostPort } from '../../lib/health.ts';
import { describeListenAddress, parseListenAddress } from '../../lib/listen-address.ts';

test('HOST:PORT, [IPv6]:PORT, :PORT (every address), PORT (loopback), unix:PATH', () => {
  const p = (v: string) => parseListenAddress(v, '--listen', { unix: true });
  assert.deepEqual(p('10.0.0.1:5473'), { kind: 'tcp', host: '10.0.0.1', port: 5473 });
  assert.deepEqual(p('[::1]:5473'), { kind: 'tcp', host: '::1', port: 5473 });
  assert.deepEqual(p(':5473'), { kind: 'tcp', host: undefined, port: 5473 });
  assert.deepEqual(p('5473'), { kind: 'tcp', host: '127.0.0.1', port: 5473 });
  assert.deepEqual(p('unix:/run/fedmesh.sock'), { kind: 'unix', path: '/run/fedmesh.sock' });
  assert.equal(describeListenAddress(p(':5473')), 'every address (IPv4 and IPv6), port 5473');
});

test('bad values are refused, naming the flag and the grammar', () => {
  for (const [v, why] of [
    ['host:99999', /port 99999 is out of range/],
    ['a:b:1', /not an address/],
    ['unix:', /no socket path/],
    ['', /not an address/],
  ] as const)
    assert.throws(
      () => parseListenAddress(v, '--listen', { unix: true }),
      new RegExp(`--listen .*${why.source}.*expected HOST:PORT, :PORT`),
    );
  assert.throws(() => parseHostPort('unix:/x', '--health-listen'), /--health-listen .*not supported here/);
});

test('--health-listen: loopback unless an address is given', () => {
  assert.deepEqual(parseHostPort('9098', '--health-listen'), { host: '127.0.0.1', port: 9098 });
  assert.deepEqual(parseHostPort(':9098', '--health-listen'), { host: undefined, port: 9098 });
  assert.deepEqual(parseHostPort('10.1.2.3:9098', '--health-listen'), { host: '10.1.2.3', port: 9098 });
});
