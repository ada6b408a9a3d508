/**
 * A/B of Gantry builds on the status-poll path (how the src changes in
 * docs/performance.md were measured before/after).
 * Usage: [AB_ROUNDS=8] [AB_SECONDS=4] [AB_ENDPOINT=status|sensor] [BENCH_LOG_LEVEL=warn] node --import tsx bench/ab.ts DIST_A DIST_B [DIST_C ...]
 * where DIST_x is a compiled tree containing src/main.js (e.g. dist, or a
 * copy of dist built from the previous commit). Every round starts each
 * build and the bare route afresh (benchFreshPolls), warms them up 2 s and
 * measures each in turn. Prints req/s and server CPU µs per request per
 * build, with ratios to A and to the bare route.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mean, round } from './lib/util.js';
import { benchFreshPolls, seedJobs } from './sections/polls.js';

const dists = process.argv.slice(2).map((d) => path.resolve(d));
if (dists.length < 2) {
  process.stderr.write('usage: ab.ts DIST_A DIST_B [DIST_C ...]\n');
  process.exit(2);
}

async function main(): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-ab-'));
  try {
    const dataDirs = dists.map((_, i) => path.join(tmp, String(i)));
    const ids = await seedJobs(dataDirs[0]!, 10_000);
    for (const d of dataDirs.slice(1)) fs.cpSync(dataDirs[0]!, d, { recursive: true });
    const { rounds } = await benchFreshPolls({
      dists,
      dataDirs,
      ids,
      rounds: Number(process.env.AB_ROUNDS ?? 8),
      warmupSeconds: 2,
      seconds: Number(process.env.AB_SECONDS ?? 4),
      connections: Number(process.env.BENCH_POLL_CONNECTIONS ?? 100),
      // sensor: GET /v1/jobs/{id}/wait on jobs that have not ended (404).
      endpoint: process.env.AB_ENDPOINT === 'sensor' ? 'sensor' : 'status',
    });
    const s = Object.fromEntries(
      Object.entries(rounds).map(([k, v]) => [
        k,
        { reqPerS: round(mean(v.reqPerS), 0), cpuUsPerReq: round(mean(v.cpuUsPerReq), 1), p99Ms: round(mean(v.p99Ms), 1) },
      ]),
    );
    process.stdout.write(`${JSON.stringify({ mean: s, rounds })}\n`);
    dists.forEach((dist, i) => {
      const n = String.fromCharCode(65 + i);
      process.stdout.write(
        `${n} (${dist}): ${s[n]!.reqPerS} req/s = ${round(s[n]!.reqPerS / s.bare!.reqPerS, 2)}× bare, ${s[n]!.cpuUsPerReq} µs CPU/request = ${round(s[n]!.cpuUsPerReq / s.A!.cpuUsPerReq, 2)}× A, p99 ${s[n]!.p99Ms} ms\n`,
      );
    });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

void main();
