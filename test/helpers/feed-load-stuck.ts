// A child process for the feed load test and bench: N agents that connect, read their hello,
// and then never read again (each on its own connection, as separate nodes would be).
//   node --import tsx feed-load-stuck.ts TARGET N
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { ClientHelloSchema, FEED_SYNC_PATH, feedServiceDefinition } from '../../proto/service.ts';

const [target, n] = process.argv.slice(2);
const def = feedServiceDefinition.sync;
const calls: grpc.ClientReadableStream<unknown>[] = [];
let hellos = 0;
for (let i = 0; i < Number(n); i++) {
  const client = new grpc.Client(target!, grpc.credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
  });
  // Messages are kept as the bytes that arrived, never decoded: a stuck agent spends no CPU, so
  // the syncer's figures are not the harness's.
  const call = client.makeServerStreamRequest(
    FEED_SYNC_PATH,
    def.requestSerialize,
    (b: Buffer) => b,
    create(ClientHelloSchema, { nodeName: `stuck-${i}`, version: 'load' }),
  );
  call.once('data', () => {
    call.pause();
    hellos += 1;
    if (hellos === Number(n)) process.send?.({ type: 'ready' });
  });
  call.on('error', () => {}); // seen only if it ever reads again
  calls.push(call);
}
process.on('message', () => process.exit(0));
