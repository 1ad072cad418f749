#!/usr/bin/env node
// A tiny TCP probe for the demo and the end-to-end tests, run inside pod namespaces.
//   probe.mjs serve PORT [PORT...]       answer every connection with "<name> saw <peer address>"
//   probe.mjs connect HOST PORT [MS]     print the server's answer; exit 0 if one came, 1 if not
// Plain JavaScript so that it starts in ~40 ms with no compiler.
import net from 'node:net';
import os from 'node:os';

const [mode, ...args] = process.argv.slice(2);
if (mode === 'serve') {
  const name = process.env.PROBE_NAME || os.hostname();
  for (const port of args.map(Number)) {
    net
      .createServer((sock) => {
        sock.end(`${name} saw ${sock.remoteAddress}\n`);
        sock.on('error', () => {});
      })
      .listen(port, '0.0.0.0');
  }
} else if (mode === 'connect') {
  const [host, port, ms = '1000'] = args;
  const sock = net.connect({ host, port: Number(port) });
  let data = '';
  const fail = (why) => {
    process.stdout.write(`no answer: ${why}\n`);
    process.exit(1);
  };
  const timer = setTimeout(() => fail('timeout'), Number(ms));
  sock.on('data', (d) => {
    data += d;
  });
  sock.on('end', () => {
    clearTimeout(timer);
    process.stdout.write(data);
    process.exit(data ? 0 : 1);
  });
  sock.on('error', (e) => fail(e.code || e.message));
} else {
  process.stderr.write('usage: probe.mjs serve PORT... | connect HOST PORT [MS]\n');
  process.exit(2);
}
