// The file datastore against careless and hostile input (issue 8): typos refused while the rest
// is served, half-written and rewritten files, refusals that go away when fixed, paths and
// symlinks that leave the root, special files.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RemoteClusterConfiguration, ResourceError } from '../../model/resources.ts';
import { resourceId } from '../../model/resources.ts';
import type { DatastoreEvent, DatastoreStatus } from '../../syncer/datastore/types.ts';

process.env.FEDMESH_LOG_LEVEL ??= 'silent';
const { FileDatastore } = await import('../../syncer/datastore/file.ts');
const { checkFileDatastorePath, defaultFileRoot } = await import('../../syncer/datastore/paths.ts');
const { resolveRemoteConfig } = await import('../../syncer/remote-config.ts');
const { Merger } = await import('../../syncer/merger.ts');
const { FeedCache } = await import('../../syncer/feed-cache.ts');

class Recorder {
  events: string[] = [];
  batches = 0;
  statuses: DatastoreStatus[] = [];
  errors: ResourceError[] = [];
  refusals: ResourceError[] | undefined;
  handlers = {
    onEvents: (events: DatastoreEvent[]) => {
      this.batches += 1;
      for (const e of events)
        this.events.push(
          e.type === 'upsert' ? `upsert:${resourceId(e.resource)}` : `delete:${resourceId(e)}`,
        );
    },
    onStatus: (s: DatastoreStatus) => {
      this.statuses.push(s);
    },
    onErrors: (errors: ResourceError[]) => {
      this.errors.push(...errors);
    },
    onRefusals: (errors: ResourceError[]) => {
      this.refusals = errors;
    },
  };
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'fedmesh-hostile-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function started(t: TestContext, dir: string, opts: { root?: string } = {}) {
  const ds = new FileDatastore(dir, opts);
  const rec = new Recorder();
  t.after(() => ds.stop());
  await ds.start(rec.handlers);
  return { ds, rec };
}

const gns = (name: string, nets = '[10.0.0.0/8]') =>
  `apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: ${name}}\nspec: {nets: ${nets}}\n`;
const docs = (...d: string[]) => d.join('---\n');
const typoPolicy = `apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: db}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    protocol: TCP
    source: {selectr: app == 'web'}
    destination: {ports: [5432]}
`;

describe('file datastore: hostile input', () => {
  test("a typo'd key is refused, naming the field, while the rest of the file is served", async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'a.yaml'), docs(gns('one'), typoPolicy, gns('two')));
    const { rec } = await started(t, dir);
    assert.deepEqual(rec.events, ['upsert:GlobalNetworkSet/one', 'upsert:GlobalNetworkSet/two']);
    const err = rec.errors.find((e) => e.resource === 'GlobalNetworkPolicy/db');
    assert.equal(err?.field, 'spec.ingress[0].source.selectr');
    assert.match(err?.message ?? '', /unknown field/);
    assert.equal(err?.origin.document, 1);
  });

  test('refusals in force go down when the input is fixed', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'a.yaml');
    writeFileSync(file, docs(gns('one'), typoPolicy));
    const { rec } = await started(t, dir);
    assert.equal(rec.refusals?.length, 1);
    writeFileSync(file, docs(gns('one'), typoPolicy.replace('selectr', 'selector')));
    await waitFor('the fix', () => rec.events.includes('upsert:GlobalNetworkPolicy/db'));
    await waitFor('no refusals', () => rec.refusals?.length === 0);
  });

  test('the syncer counts refusals in force: up with bad input, down when fixed', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'a.yaml');
    writeFileSync(file, docs(gns('one'), typoPolicy, gns('bad', '[10.0.0.300/8]')));
    const merger = new Merger({
      cluster: 'a',
      local: new FileDatastore(dir),
      cache: new FeedCache(),
      resolveRemote: () => ({ incomplete: 'none' }),
      remoteSyncTimeoutMs: 100,
      remoteRetentionMs: 1000,
    });
    t.after(() => merger.stop());
    await merger.start();
    assert.equal(merger.refusals.count, 2);
    // Re-reading the same bad input does not count it twice.
    writeFileSync(file, docs(gns('one', '[10.1.0.0/16]'), typoPolicy, gns('bad', '[10.0.0.300/8]')));
    await sleep(400);
    assert.equal(merger.refusals.count, 2);
    writeFileSync(file, docs(gns('one'), typoPolicy.replace('selectr', 'selector'), gns('bad')));
    await waitFor('refusals to go', () => merger.refusals.count === 0);
    assert.deepEqual(merger.errors, []);
  });

  test('a half-written file withdraws nothing; the complete new version then applies', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'a.yaml');
    writeFileSync(file, docs(gns('one'), gns('two'), gns('three')));
    const { rec } = await started(t, dir);
    assert.equal(rec.events.length, 3);

    // Cut in the middle of a line (no final newline), well past the settle time.
    const next = docs(gns('one', '[10.1.0.0/16]'), gns('two'));
    writeFileSync(file, next.slice(0, next.indexOf('metadata: {name: two}') + 12));
    await sleep(500);
    assert.ok(!rec.events.some((e) => e.startsWith('delete:')), rec.events.join());

    // Cut inside a flow sequence: a syntax error. The last good version stands, however long.
    writeFileSync(file, `${gns('one', '[10.1.0.0/16]')}---\n${gns('two').replace(']}', '')}`);
    await sleep(1500);
    assert.ok(!rec.events.some((e) => e.startsWith('delete:')), rec.events.join());
    assert.ok(
      rec.refusals?.some((e) => /file looks incomplete .*keeping 1 resource/.test(e.message)),
      JSON.stringify(rec.refusals),
    );

    // Complete: three goes, as the new version says.
    writeFileSync(file, next);
    await waitFor('the delete', () => rec.events.includes('delete:GlobalNetworkSet/three'));
    assert.deepEqual(rec.events.slice(3).sort(), [
      'delete:GlobalNetworkSet/three',
      'upsert:GlobalNetworkSet/one',
    ]);
    await waitFor('no refusals', () => rec.refusals?.length === 0);
  });

  test('kubectl-style rewrite in place (truncate, write in parts) and write-then-rename', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'a.yaml');
    writeFileSync(file, docs(gns('one'), gns('two')));
    const { rec } = await started(t, dir);
    const text = docs(gns('one'), gns('two', '[10.2.0.0/16]'));
    const fd = openSync(file, 'w');
    writeSync(fd, text.slice(0, 40));
    await sleep(30);
    writeSync(fd, text.slice(40));
    closeSync(fd);
    await waitFor('the rewrite', () => rec.events.length >= 3);
    await sleep(300);
    assert.deepEqual(rec.events.slice(2), ['upsert:GlobalNetworkSet/two']);

    writeFileSync(join(dir, 'a.yaml.tmp'), docs(gns('one'), gns('two', '[10.3.0.0/16]')));
    execFileSync('mv', [join(dir, 'a.yaml.tmp'), file]);
    await waitFor('the rename', () => rec.events.length >= 4);
    await sleep(300);
    assert.deepEqual(rec.events.slice(3), ['upsert:GlobalNetworkSet/two']);
  });

  test('a symlink that leaves the root is refused; one inside it is read; a FIFO is skipped', async (t) => {
    const root = tempDir(t);
    const dir = join(root, 'a');
    mkdirSync(dir);
    mkdirSync(join(root, 'shared'));
    writeFileSync(join(root, 'shared', 'sets.yaml'), gns('shared'));
    writeFileSync(join(dir, 'own.yaml'), gns('own'));
    symlinkSync('/etc/passwd', join(dir, 'passwd.yaml'));
    symlinkSync(join(root, 'shared', 'sets.yaml'), join(dir, 'shared.yaml'));
    execFileSync('mkfifo', [join(dir, 'pipe.yaml')]);

    const { rec } = await started(t, dir);
    assert.deepEqual(rec.events.sort(), ['upsert:GlobalNetworkSet/own', 'upsert:GlobalNetworkSet/shared']);
    const skipped = (rec.refusals ?? []).map((e) => `${e.origin.source}: ${e.message}`);
    assert.ok(
      skipped.some((s) => /passwd\.yaml: skipped: a symlink to \/etc\/passwd, outside/.test(s)),
      skipped.join('\n'),
    );
    assert.ok(
      skipped.some((s) => /pipe\.yaml: skipped: a FIFO/.test(s)),
      skipped.join('\n'),
    );
    assert.ok(!JSON.stringify(rec.errors).includes('root:x:0'), "the target's lines never show");

    // Removed: the skip is no longer reported.
    rmSync(join(dir, 'pipe.yaml'));
    await waitFor(
      'the FIFO gone from refusals',
      () => !rec.refusals?.some((e) => /pipe\.yaml/.test(e.origin.source)),
    );
  });

  test('fileDatastorePath must lie under the root', (t) => {
    const root = tempDir(t);
    mkdirSync(join(root, 'a'));
    mkdirSync(join(root, 'b'));
    assert.equal(defaultFileRoot(`file:${join(root, 'a')}`), root);
    assert.equal(defaultFileRoot('etcdv3:http://127.0.0.1:2379'), undefined);
    assert.deepEqual(checkFileDatastorePath(join(root, 'b'), root), { dir: join(root, 'b') });
    const up = join(root, 'a', '../../../../etc');
    assert.match(
      String((checkFileDatastorePath(up, root) as { error: string }).error),
      /outside the file datastore root/,
    );
    assert.match(
      String((checkFileDatastorePath(join(root, 'b'), undefined) as { error: string }).error),
      /needs --file-datastore-root/,
    );
    // A symlinked directory that leads out is judged by where it leads.
    symlinkSync('/etc', join(root, 'escape'));
    assert.ok('error' in checkFileDatastorePath(join(root, 'escape'), root));

    const rcc = (path: string): RemoteClusterConfiguration => ({
      kind: 'RemoteClusterConfiguration',
      name: 'b',
      labels: {},
      annotations: {},
      origin: { source: 'x.yaml' },
      spec: { datastoreType: 'file', fileDatastorePath: path, overlayRouting: false },
    });
    // The syncer's RCC resolution applies the root: outside it, or with no root at all, the RCC
    // is incomplete (its data is not read).
    const resolve = (r: ReturnType<typeof rcc>, fileRoot: string | false) =>
      resolveRemoteConfig(r as never, () => undefined, { defaultSecretNamespace: 'x', fileRoot });
    const refused = resolve(rcc(up), root);
    assert.ok('incomplete' in refused && /outside/.test(refused.incomplete));
    const accepted = resolve(rcc(join(root, 'b')), root);
    assert.ok('connection' in accepted && accepted.connection.type === 'file');
    assert.ok('incomplete' in resolve(rcc(join(root, 'b')), false));
  });
});
