// The CLI's streaming read of a file datastore against the driver's one-shot load: on random
// directories (duplicates within and across files, refused and skipped documents, syntax errors,
// blank documents, Lists, files that are not read), both give the same resources, refusals and
// skipped resources, in the same order.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Resource } from '../../model/resources.ts';

process.env.FEDMESH_LOG_LEVEL ??= 'silent';
const { FileDatastore } = await import('../../syncer/datastore/file.ts');
const { loadFiles, streamFiles } = await import('../../syncer/datastore/file-stream.ts');

const NAMES = ['n1', 'n2', 'n3', 'n4'];

/** One document's text: accepted, refused, skipped, broken or blank. */
const documentArb: fc.Arbitrary<string> = fc.oneof(
  fc
    .tuple(fc.constantFrom(...NAMES), fc.constantFrom('10.0.0.0/8', '192.168.1.0/24'))
    .map(
      ([name, net]) =>
        `apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: ${name}}\nspec: {nets: [${net}]}\n`,
    ),
  fc
    .constantFrom(...NAMES)
    .map((name) => `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n  labels: {team: a}\n`),
  // refused: a field, an unknown kind, a syntax error (its identity still readable or not)
  fc
    .constantFrom(...NAMES)
    .map(
      (name) =>
        `apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: ${name}}\nspec: {nets: [nope]}\n`,
    ),
  fc.constant('apiVersion: foo/v1\nkind: Bar\nmetadata: {name: x}\n'),
  fc
    .constantFrom(...NAMES)
    .map((name) => `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${name}}\nspec: [\n`),
  fc.constant('a: [1, 2\n'),
  // skipped (IPv6), made unique: identical skipped documents are a quirk of the driver's cache
  fc
    .nat(1000)
    .map(
      (n) =>
        `# ${n}\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p${n}}\nspec: {cidr: 'fd00::/64'}\n`,
    ),
  // a List with a duplicate inside
  fc
    .tuple(fc.constantFrom(...NAMES), fc.constantFrom(...NAMES))
    .map(
      ([a, b]) =>
        `apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: ${a}}}\n- {apiVersion: v1, kind: Namespace, metadata: {name: ${b}}}\n`,
    ),
  // blank, comments, null
  fc.constantFrom('', '# only a comment\n', 'null\n', '~\n'),
);

const fileArb = fc.record({
  name: fc.constantFrom('a.yaml', 'b.yml', 'c.yaml', '0.yaml', 'z.yaml', '.hidden.yaml', 'notes.txt'),
  preamble: fc.constantFrom('', '# header\n'),
  documents: fc.array(documentArb, { maxLength: 6 }),
  end: fc.constantFrom('', '---\n', '...\n'),
});

function render(f: { preamble: string; documents: string[]; end: string }): string {
  return f.preamble + f.documents.map((d) => `---\n${d}`).join('') + f.end;
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'fedmesh-file-stream-'));
}

test('the streaming read gives what the driver loads, on random directories', async () => {
  const base = tmp();
  try {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fileArb, { maxLength: 5 }), async (files) => {
        const dir = join(base, `c${run++}`);
        mkdirSync(dir);
        for (const f of files) writeFileSync(join(dir, f.name), render(f));
        const driver = await FileDatastore.load(dir);
        const stream = await loadFiles(dir);
        assert.deepEqual(stream, driver);
      }),
      { numRuns: 150 },
    );
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('files that are not read are refused the same way: a directory, a FIFO, a symlink out of the root', async () => {
  const base = tmp();
  try {
    const root = join(base, 'root');
    const dir = join(root, 'a');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(base, 'outside.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: out}\n');
    writeFileSync(join(dir, 'ok.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: in}\n');
    symlinkSync(join(base, 'outside.yaml'), join(dir, 'link.yaml'));
    mkdirSync(join(dir, 'sub.yaml'));
    execFileSync('mkfifo', [join(dir, 'pipe.yaml')]);
    const driver = await FileDatastore.load(dir, { root });
    const stream = await loadFiles(dir, { root });
    assert.deepEqual(stream, driver);
    assert.deepEqual(
      stream.resources.map((r) => r.name),
      ['in'],
    );
    assert.equal(stream.errors.length, 3, JSON.stringify(stream.errors));
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('a missing directory throws, naming it', async () => {
  const dir = join(tmpdir(), 'fedmesh-file-stream-missing-dir');
  await assert.rejects(loadFiles(dir), /file datastore .*fedmesh-file-stream-missing-dir: ENOENT/);
});

test('the stream hands each resource on in order and waits for its consumer', async () => {
  const dir = tmp();
  try {
    writeFileSync(join(dir, 'a.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n');
    writeFileSync(join(dir, 'b.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n');
    const seen: string[] = [];
    const got = await streamFiles(dir, {}, async (r: Resource) => {
      seen.push(r.name);
      // The consumer's pace: the stream waits for it.
      await new Promise((resolve) => setTimeout(resolve, 5));
      seen.push(`${r.name} done`);
    });
    assert.deepEqual(seen, ['a', 'a done', 'b', 'b done']);
    assert.deepEqual(got, { errors: [], skipped: [] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
