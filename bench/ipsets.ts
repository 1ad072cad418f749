// ipset benchmark at the calculation benchmark's scale B: a cold start's write of SETS policy sets
// (20 to 308 members each, 164 on average: 20,000 sets hold 3.3M members, as calc B's graph sends
// them) through the agent's driver, beside the kernel floor as DESIGN.md defines it (the same final
// state, `ipset save` of it loaded by one `ipset restore` into a fresh namespace). At this scale the
// floor is not the kernel's: the tool walks a list of every set it has named for each line (see
// SETS_PER_TOOL in native/ipset.ts), so a ratio under 1 is the tool's cost avoided. Then what the
// sets take in kernel memory and how long one header listing (each drift check's) takes.
//   npm run bench -- ipsets [sets=20000]

import { run } from '../native/exec.ts';
import { IpSetDriver, type IpSetSpec, listedMemoryBytes } from '../native/ipset.ts';
import { addNetns, deleteNetns, uniqueTag } from '../native/netns.ts';

const SETS = Number(process.argv[2] ?? 20_000);

/** The sets, as the graph sends them (lists of /32 nets); a fixed seed, so every run writes the same. */
function policySets(count: number): { sets: Map<string, IpSetSpec>; members: number } {
  let seed = 1;
  const next = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
    return seed;
  };
  const sets = new Map<string, IpSetSpec>();
  let members = 0;
  for (let s = 0; s < count; s++) {
    const size = 20 + (next() % 289);
    const list: string[] = [];
    for (let k = 0; k < size; k++) {
      const n = next();
      list.push(`10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}/32`);
    }
    members += size;
    const name = `cali40s:bench${String(s).padStart(5, '0')}`;
    sets.set(name, { name, type: 'hash:net', members: list });
  }
  return { sets, members };
}

const tag = uniqueTag();
const agentNs = `fmb${tag}-sets`;
const floorNs = `fmb${tag}-floor`;
const { sets, members } = policySets(SETS);
console.log(`ipset benchmark: ${SETS} sets holding ${members.toLocaleString('en')} members (a cold start)`);
try {
  await addNetns(agentNs);
  await addNetns(floorNs);
  const driver = new IpSetDriver({ netns: agentNs });
  const t0 = performance.now();
  let createdMs = 0;
  const { commands: restores } = await driver.apply(sets, {
    onCreated: () => {
      createdMs = performance.now() - t0;
    },
  });
  const agentMs = performance.now() - t0;
  driver.close();
  const saved = (await run('ipset', ['save'], { netns: agentNs })).stdout;
  const f0 = performance.now();
  // Minutes at this scale: past run()'s default limit of 60 s.
  await run('ipset', ['restore'], { netns: floorNs, input: saved, timeoutMs: 30 * 60_000 });
  const floorMs = performance.now() - f0;
  console.log(
    `  agent: ${agentMs.toFixed(0)} ms in ${restores} ipset restore runs (the sets created in one, ${createdMs.toFixed(0)} ms; then runs of at most 256 sets, two side by side)`,
  );
  console.log(
    `  floor, the same state in one ipset restore: ${floorMs.toFixed(0)} ms; ratio agent / floor ${(agentMs / floorMs).toFixed(2)}`,
  );
  const l0 = performance.now();
  const terse = (await run('ipset', ['list', '-t'], { netns: agentNs })).stdout;
  const listMs = performance.now() - l0;
  const bytes = listedMemoryBytes(terse);
  console.log(
    `  kernel memory by ipset's own count: ${(bytes / 2 ** 20).toFixed(0)} MiB; one header listing (the drift check's): ${listMs.toFixed(0)} ms`,
  );
} finally {
  await Promise.all([deleteNetns(agentNs), deleteNetns(floorNs)]);
}
