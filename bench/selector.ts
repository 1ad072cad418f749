// Micro-benchmark of the selector module: parse rate and evaluate cost per (selector, labels) pair.
// Run: node --import tsx bench/selector.ts [endpoints]
import type { Labels } from '../model/resources.ts';
import { parseSelector, type Selector } from '../model/selector/index.ts';

const ENDPOINTS = Number(process.argv[2] ?? 100_000);

/** Label sets of several shapes, as a real cluster has (many pods, a few dozen label layouts). */
function makeEndpoints(n: number): Labels[] {
  const out: Labels[] = [];
  for (let i = 0; i < n; i++) {
    const l: Record<string, string> = {
      app: `app-${i % 200}`,
      'projectcalico.org/namespace': `ns-${i % 50}`,
      'projectcalico.org/orchestrator': 'k8s',
    };
    if (i % 3 === 0) l.tier = ['frontend', 'backend', 'db'][i % 9 === 0 ? 0 : 1]!;
    if (i % 5 === 0) l['app.kubernetes.io/version'] = `v${i % 7}`;
    if (i % 7 === 0) l[`extra-${i % 11}`] = 'x';
    out.push(l);
  }
  return out;
}

function timeEvaluate(sel: Selector, eps: Labels[], rounds: number): number {
  let matched = 0;
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < eps.length; i++) if (sel.evaluate(eps[i]!)) matched++;
  }
  const ns = Number(process.hrtime.bigint() - t0);
  if (matched < 0) console.log(matched); // keep the loop observable
  return ns / (rounds * eps.length);
}

const SELECTORS = [
  "app == 'app-7'",
  "app != 'app-7'",
  'has(tier) && !has(extra-3)',
  "app in {'app-1', 'app-2', 'app-3', 'app-4', 'app-5'}",
  "app starts with 'app-1' && tier == 'backend'",
  "(projectcalico.org/namespace == 'ns-3') && (app == 'app-3' || tier in {'db', 'frontend'})",
];

const eps = makeEndpoints(ENDPOINTS);
for (const src of SELECTORS) {
  const sel = parseSelector(src);
  timeEvaluate(sel, eps, 2); // warm-up
  console.log(`evaluate ${timeEvaluate(sel, eps, 5).toFixed(1).padStart(6)} ns  ${src}`);
}

const N = 20_000;
const sources = Array.from({ length: N }, (_, i) =>
  SELECTORS[i % SELECTORS.length]!.replace(/app-\d+/, `app-${i}`),
);
const t0 = process.hrtime.bigint();
for (const s of sources) parseSelector(s);
const parseNs = Number(process.hrtime.bigint() - t0) / N;
console.log(`parse    ${(parseNs / 1000).toFixed(2)} µs per selector (mixed set above)`);
const t1 = process.hrtime.bigint();
for (const s of sources.slice(0, 5000)) void parseSelector(s).id;
console.log(`parse+id ${(Number(process.hrtime.bigint() - t1) / 5000 / 1000).toFixed(2)} µs per selector`);

// The agent's case: many selectors over all endpoints.
const many = Array.from({ length: 2000 }, (_, i) =>
  parseSelector(SELECTORS[i % SELECTORS.length]!.replace(/app-\d+/, `app-${i % 200}`)),
);
const few = eps.slice(0, 10_000);
const t2 = process.hrtime.bigint();
let hits = 0;
for (const sel of many) for (const l of few) if (sel.evaluate(l)) hits++;
const perPair = Number(process.hrtime.bigint() - t2) / (many.length * few.length);
console.log(`2000 selectors x ${few.length} endpoints: ${perPair.toFixed(1)} ns per pair (${hits} matches)`);
