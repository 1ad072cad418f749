// Encoding feed messages once. Every client's snapshot holds the same Update objects (the cache's
// entries), and a connect storm (a syncer restart, 500 agents at once) would encode each of them
// once per client. Instead each Update is encoded once, kept beside it while it lives (a WeakMap:
// it goes when the cache drops the Update), and an `updates` message is framed by hand from those
// bytes. The framing is protobuf's: ServerMessage.updates (field 2) holding UpdateBatch.updates
// (field 1, repeated), each a length-delimited field.
import { toBinary } from '@bufbuild/protobuf';
import { type Update, UpdateSchema } from '../proto/service.ts';

const encoded = new WeakMap<Update, Uint8Array>();

/** Field 2 (ServerMessage.updates) and field 1 (UpdateBatch.updates), wire type 2. */
const SERVER_MESSAGE_UPDATES_TAG = (2 << 3) | 2;
const UPDATE_BATCH_UPDATES_TAG = (1 << 3) | 2;

function encodedUpdate(u: Update): Uint8Array {
  let b = encoded.get(u);
  if (!b) {
    b = toBinary(UpdateSchema, u);
    encoded.set(u, b);
  }
  return b;
}

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len += 1;
  }
  return len;
}

function writeVarint(out: Uint8Array, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  return at;
}

/** The bytes of ServerMessage{updates: {updates}}, as toBinary would write them. */
export function encodeUpdatesMessage(updates: readonly Update[]): Uint8Array {
  const parts = updates.map(encodedUpdate);
  let batch = 0;
  for (const p of parts) batch += 1 + varintLength(p.byteLength) + p.byteLength;
  const out = new Uint8Array(1 + varintLength(batch) + batch);
  out[0] = SERVER_MESSAGE_UPDATES_TAG;
  let at = writeVarint(out, 1, batch);
  for (const p of parts) {
    out[at++] = UPDATE_BATCH_UPDATES_TAG;
    at = writeVarint(out, at, p.byteLength);
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
