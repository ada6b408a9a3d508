/**
 * Summarises a V8 .cpuprofile (from BENCH_CPU_PROF=dir npm run bench, or
 * node --cpu-prof): self time by function and by package/file, so the hot
 * path shows without a UI.
 * Usage: [INCLUSIVE=all] node --import tsx bench/profile-summary.ts FILE.cpuprofile [TOP=25]
 */
import fs from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: profile-summary FILE.cpuprofile [TOP]\n');
  process.exit(2);
}
const top = Number(process.argv[3] ?? 25);
/** INCLUSIVE=all: inclusive time of every function, not only Gantry's. */
const allFrames = process.env.INCLUSIVE === 'all';
const p = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Self time per node from the samples and their time deltas.
const self = new Map<number, number>();
p.samples.forEach((id, i) => {
  self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
});
const total = [...self.values()].reduce((a, b) => a + b, 0);

function where(n: Node): string {
  const u = n.callFrame.url;
  if (!u) return '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (nm) return nm[1]!;
  if (u.startsWith('node:')) return u;
  const src = /\/(dist\/src\/.*|src\/.*)$/.exec(u);
  return src ? src[1]! : u;
}

const fnSelf = new Map<string, number>();
const pkgSelf = new Map<string, number>();
// Inclusive time of Gantry's own functions (dist/src), each counted once per sample.
const gantryIncl = new Map<string, number>();
p.samples.forEach((id, i) => {
  const dt = p.timeDeltas[i] ?? 0;
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const n = byId.get(cur)!;
    if (!allFrames && !/dist\/src\//.test(n.callFrame.url)) continue;
    const key = `${n.callFrame.functionName || '(anonymous)'} ${where(n)}:${n.callFrame.lineNumber + 1}`;
    if (seen.has(key)) continue;
    seen.add(key);
    gantryIncl.set(key, (gantryIncl.get(key) ?? 0) + dt);
  }
});
for (const [id, t] of self) {
  const n = byId.get(id)!;
  const key = `${n.callFrame.functionName || '(anonymous)'} ${where(n)}:${n.callFrame.lineNumber + 1}`;
  fnSelf.set(key, (fnSelf.get(key) ?? 0) + t);
  pkgSelf.set(where(n), (pkgSelf.get(where(n)) ?? 0) + t);
}
const pct = (t: number) => `${((100 * t) / total).toFixed(1).padStart(5)}%`;
const show = (title: string, m: Map<string, number>) => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, t] of [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top))
    process.stdout.write(`${pct(t)}  ${(t / 1000).toFixed(0).padStart(7)} ms  ${k}\n`);
};
process.stdout.write(`${file}: ${(total / 1e6).toFixed(2)} s sampled\n`);
show('self time by function', fnSelf);
show('self time by package / file', pkgSelf);
show(allFrames ? 'inclusive time by function' : "inclusive time of Gantry's own functions", gantryIncl);
