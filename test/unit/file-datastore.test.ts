// The file datastore on a temporary directory: initial listing, edits, deletes, the rules that
// protect against data loss, and a directory that appears late.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Resource, type ResourceError, resourceId } from '../../model/resources.ts';
import type { DatastoreEvent, DatastoreStatus } from '../../syncer/datastore/types.ts';

// The refusals these tests provoke are logged at warn; keep the test output readable (the level is
// read when lib/log.ts loads, hence the dynamic import).
process.env.FEDMESH_LOG_LEVEL ??= 'silent';
const { FileDatastore } = await import('../../syncer/datastore/file.ts');

/** Everything a datastore tells its handlers, in order. */
class Recorder {
  statuses: { status: DatastoreStatus; detail?: string }[] = [];
  batches: { events: DatastoreEvent[]; revision: number }[] = [];
  errors: ResourceError[] = [];
  timeline: string[] = [];
  handlers = {
    onEvents: (events: DatastoreEvent[], revision: number) => {
      this.batches.push({ events, revision });
      this.timeline.push(`batch(${events.length})`);
    },
    onStatus: (status: DatastoreStatus, detail?: string) => {
      this.statuses.push({ status, ...(detail !== undefined ? { detail } : {}) });
      this.timeline.push(status);
    },
    onErrors: (errors: ResourceError[]) => {
      this.errors.push(...errors);
    },
  };
}

/** `upsert:Kind/ns/name` or `delete:Kind/ns/name`, for compact assertions. */
function describeEvent(e: DatastoreEvent): string {
  return e.type === 'upsert' ? `upsert:${resourceId(e.resource)}` : `delete:${resourceId(e)}`;
}

function upserted(batch: { events: DatastoreEvent[] } | undefined, id: string): Resource {
  const ev = batch?.events.find((e) => e.type === 'upsert' && resourceId(e.resource) === id);
  assert.ok(ev && ev.type === 'upsert', `upsert of ${id}`);
  return ev.resource;
}

function netsOf(r: Resource): unknown {
  assert.equal(r.kind, 'GlobalNetworkSet');
  return r.kind === 'GlobalNetworkSet' ? r.spec.nets : undefined;
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 2000): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
  return Date.now() - start;
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-fds-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function started(t: TestContext, dir: string, pollIntervalMs?: number) {
  const ds = new FileDatastore(dir, pollIntervalMs ? { pollIntervalMs } : {});
  const rec = new Recorder();
  t.after(() => ds.stop());
  await ds.start(rec.handlers);
  return { ds, rec };
}

const ns = (name: string, labels = '{}') =>
  `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${name}, labels: ${labels}}\n`;
const gns = (name: string, nets: string) =>
  `apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: ${name}}\nspec: {nets: ${nets}}\n`;
const docs = (...d: string[]) => d.join('---\n');

describe('FileDatastore', () => {
  test('initial listing as one batch, then InSync', async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'a.yaml'), docs(ns('shop'), gns('blocklist', '[192.0.2.0/24]')));
    writeFileSync(
      join(dir, 'b.yml'),
      '{apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {name: p}, spec: {cidr: 10.10.0.0/16}}\n',
    );
    writeFileSync(join(dir, 'notes.txt'), 'not yaml');
    writeFileSync(join(dir, '.hidden.yaml'), ns('hidden'));
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'c.yaml'), ns('nested'));

    const { ds, rec } = await started(t, dir);
    assert.equal(ds.description, `file:${dir}`);
    assert.deepEqual(rec.timeline, ['Connecting', 'ResyncInProgress', 'batch(3)', 'InSync']);
    assert.equal(rec.batches[0]?.revision, 1);
    assert.deepEqual(rec.batches[0]?.events.map(describeEvent), [
      'upsert:Namespace/shop',
      'upsert:GlobalNetworkSet/blocklist',
      'upsert:IPPool/p',
    ]);
    assert.equal(upserted(rec.batches[0], 'IPPool/p').origin.source, join(dir, 'b.yml'));
    assert.deepEqual(rec.errors, []);
  });

  test('an edit emits exactly the resources that changed, within 2 s', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'cluster.yaml');
    writeFileSync(file, docs(ns('one'), ns('two', '{team: a}'), ns('three')));
    const { rec } = await started(t, dir);

    // A changed label, an unchanged document moved, one document removed, one added.
    writeFileSync(file, docs(ns('two', '{team: b}'), ns('one'), ns('four')));
    const took = await waitFor('the edit', () => rec.batches.length >= 2);
    assert.ok(took < 2000);
    assert.deepEqual(rec.batches[1]?.events.map(describeEvent).sort(), [
      'delete:Namespace/three',
      'upsert:Namespace/four',
      'upsert:Namespace/two',
    ]);
    assert.equal(upserted(rec.batches[1], 'Namespace/two').labels.team, 'b');
    assert.ok((rec.batches[1]?.revision ?? 0) > (rec.batches[0]?.revision ?? 0));

    // The watch and the poll both see the edit: still only one batch.
    await sleep(1200);
    assert.equal(rec.batches.length, 2);
  });

  test('a file replaced by rename (as editors do) is picked up', async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'a.yaml'), ns('one'));
    const { rec } = await started(t, dir);
    writeFileSync(join(dir, '.a.yaml.tmp'), ns('one', '{x: y}'));
    renameSync(join(dir, '.a.yaml.tmp'), join(dir, 'a.yaml'));
    await waitFor('the replaced file', () => rec.batches.length >= 2);
    assert.deepEqual(rec.batches[1]?.events.map(describeEvent), ['upsert:Namespace/one']);
  });

  test('deleting a file deletes its resources', async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'a.yaml'), docs(ns('one'), gns('set', '[10.0.0.0/8]')));
    writeFileSync(join(dir, 'b.yaml'), ns('kept'));
    const { rec } = await started(t, dir);
    unlinkSync(join(dir, 'a.yaml'));
    await waitFor('the deletes', () => rec.batches.length >= 2);
    assert.deepEqual(rec.batches[1]?.events, [
      { type: 'delete', kind: 'Namespace', name: 'one' },
      { type: 'delete', kind: 'GlobalNetworkSet', name: 'set' },
    ]);
  });

  test('a document broken by an edit keeps its last good version, and the error is reported', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'a.yaml');
    writeFileSync(file, docs(ns('one'), gns('blocklist', '[10.0.0.0/8]')));
    const { rec } = await started(t, dir);

    // A bad CIDR in the set, and a real change elsewhere in the same file.
    writeFileSync(file, docs(ns('one', '{v: "2"}'), gns('blocklist', '[10.0.0.300/8]')));
    await waitFor('the edit', () => rec.batches.length >= 2);
    assert.deepEqual(rec.batches[1]?.events.map(describeEvent), ['upsert:Namespace/one']);
    const err = rec.errors.find((e) => e.resource === 'GlobalNetworkSet/blocklist');
    assert.ok(err, 'the refusal is reported');
    assert.equal(err.origin.source, file);
    assert.equal(err.origin.document, 1);
    assert.equal(err.field, 'spec.nets[0]');
    assert.match(err.message, /keeping the last good version/);

    // A YAML syntax error in the same document: still kept (its identity can be read).
    writeFileSync(
      file,
      docs(
        ns('one', '{v: "2"}'),
        'apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: blocklist}\nspec: {nets: [10.0.0.0/8\n',
      ),
    );
    await waitFor('the syntax error', () => rec.errors.some((e) => /YAML syntax error/.test(e.message)));
    await sleep(700);
    assert.equal(rec.batches.length, 2, 'no delete for the broken document');

    // Fixed: the new version goes out.
    writeFileSync(file, docs(ns('one', '{v: "2"}'), gns('blocklist', '[10.0.0.0/9]')));
    await waitFor('the fix', () => rec.batches.length >= 3);
    assert.deepEqual(netsOf(upserted(rec.batches[2], 'GlobalNetworkSet/blocklist')), ['10.0.0.0/9']);
  });

  test('the same resource in two files: the first file wins, the other is refused naming both', async (t) => {
    const dir = tempDir(t);
    const a = join(dir, 'a.yaml');
    const b = join(dir, 'b.yaml');
    writeFileSync(b, docs(ns('other'), gns('dup', '[10.2.0.0/16]')));
    writeFileSync(a, gns('dup', '[10.1.0.0/16]'));
    const { rec } = await started(t, dir);

    assert.deepEqual(netsOf(upserted(rec.batches[0], 'GlobalNetworkSet/dup')), ['10.1.0.0/16']);
    assert.equal(rec.batches[0]?.events.length, 2);
    const err = rec.errors.find((e) => e.resource === 'GlobalNetworkSet/dup');
    assert.ok(err);
    assert.equal(err.origin.source, b);
    assert.ok(err.message.includes(a) && err.message.includes(b), err.message);

    // An edit of the refused copy does not take over.
    writeFileSync(b, docs(ns('other'), gns('dup', '[10.3.0.0/16]')));
    await waitFor(
      'the refusal again',
      () => rec.errors.filter((e) => e.resource === 'GlobalNetworkSet/dup').length >= 2,
    );
    await sleep(100);
    assert.equal(rec.batches.length, 1);

    // The first definition goes away: the other file's takes over.
    unlinkSync(a);
    await waitFor('the hand-over', () => rec.batches.length >= 2);
    assert.deepEqual(rec.batches[1]?.events.map(describeEvent), ['upsert:GlobalNetworkSet/dup']);
    assert.deepEqual(netsOf(upserted(rec.batches[1], 'GlobalNetworkSet/dup')), ['10.3.0.0/16']);
  });

  test('a file emptied for a moment (an editor truncating) deletes nothing', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'a.yaml');
    writeFileSync(file, docs(ns('one'), ns('two')));
    const { rec } = await started(t, dir);
    writeFileSync(file, '');
    await sleep(60);
    writeFileSync(file, docs(ns('one'), ns('two', '{x: y}')));
    await waitFor('the edit', () => rec.batches.length >= 2);
    await sleep(700);
    assert.deepEqual(
      rec.batches.slice(1).flatMap((b) => b.events.map(describeEvent)),
      ['upsert:Namespace/two'],
    );

    // Staying empty is believed.
    writeFileSync(file, '');
    await waitFor('the deletes', () => rec.batches.length >= 3);
    assert.deepEqual(rec.batches[2]?.events.map(describeEvent), [
      'delete:Namespace/one',
      'delete:Namespace/two',
    ]);
  });

  test('a missing directory is ConnectionFailed, then recovers when it appears', async (t) => {
    const parent = tempDir(t);
    const dir = join(parent, 'cluster');
    const { rec } = await started(t, dir, 100);
    assert.deepEqual(
      rec.statuses.map((s) => s.status),
      ['Connecting', 'ConnectionFailed'],
    );
    assert.match(rec.statuses[1]?.detail ?? '', /does not exist/);
    assert.equal(rec.batches.length, 0);
    await sleep(350);
    assert.equal(rec.statuses.length, 2, 'the failure is reported once, not on every retry');

    mkdirSync(dir);
    writeFileSync(join(dir, 'a.yaml'), ns('late'));
    await waitFor('in sync', () => rec.statuses.at(-1)?.status === 'InSync');
    assert.deepEqual(rec.timeline.slice(2), ['ResyncInProgress', 'batch(1)', 'InSync']);
    assert.deepEqual(rec.batches[0]?.events.map(describeEvent), ['upsert:Namespace/late']);

    // Gone again: failed, data kept; back: a complete listing again.
    rmSync(dir, { recursive: true });
    await waitFor('failure', () => rec.statuses.at(-1)?.status === 'ConnectionFailed');
    mkdirSync(dir);
    writeFileSync(join(dir, 'b.yaml'), ns('later'));
    await waitFor('in sync again', () => rec.statuses.at(-1)?.status === 'InSync');
    assert.deepEqual(rec.batches.at(-1)?.events.map(describeEvent), [
      'delete:Namespace/late',
      'upsert:Namespace/later',
    ]);
  });

  test('nothing is emitted after stop', async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'a.yaml'), ns('one'));
    const { ds, rec } = await started(t, dir, 50);
    await ds.stop();
    writeFileSync(join(dir, 'a.yaml'), ns('one', '{x: y}'));
    await sleep(200);
    assert.equal(rec.batches.length, 1);
  });

  test('load(): one-shot read with the same rules', async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'a.yaml'), docs(ns('one'), gns('dup', '[10.1.0.0/16]'), 'kind: Gadget\n'));
    writeFileSync(join(dir, 'b.yaml'), docs(gns('dup', '[10.2.0.0/16]'), ns('two')));
    const { resources, errors } = await FileDatastore.load(dir);
    assert.deepEqual(resources.map(resourceId), ['Namespace/one', 'GlobalNetworkSet/dup', 'Namespace/two']);
    assert.equal(errors.length, 2);
    await assert.rejects(FileDatastore.load(join(dir, 'missing')), /missing/);
  });
});
