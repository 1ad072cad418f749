// The hand-framed `updates` message is byte for byte what protobuf-es writes, and decodes back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ResourceKind, ServerMessageSchema } from '../../proto/service.ts';
import { encodeUpdatesMessage } from '../../syncer/feed-encoding.ts';
import { deleted, profile, wep } from '../helpers/feed-builders.ts';

test('encodeUpdatesMessage equals toBinary, for empty, small and large (multi-byte length) batches', () => {
  const big = { note: 'x'.repeat(70_000) }; // lengths over 2^16 need three varint bytes
  const batches = [
    [],
    [profile('p1', {})],
    [
      wep({ node: 'n1', pod: 'a', ips: ['10.0.0.1'], labels: { app: 'a' } }),
      deleted(ResourceKind.PROFILE, 'gone'),
      profile('big', big),
    ],
    Array.from({ length: 300 }, (_, i) => profile(`p${i}`, { i: String(i) })),
  ];
  for (const updates of batches) {
    const want = toBinary(
      ServerMessageSchema,
      create(ServerMessageSchema, { payload: { case: 'updates', value: { updates } } }),
    );
    const got = encodeUpdatesMessage(updates);
    assert.deepEqual(Buffer.from(got), Buffer.from(want));
    const back = fromBinary(ServerMessageSchema, got);
    assert.equal(back.payload.case, 'updates');
    assert.equal(back.payload.value?.updates.length, updates.length);
  }
  // Encoded once: the same Update in two messages costs no second encoding, and gives the same bytes.
  const u = profile('shared', { a: '1' });
  assert.deepEqual(encodeUpdatesMessage([u]), encodeUpdatesMessage([u]));
});
