/**
 * A/B of two Gantry builds on the status-poll path, alternating in one run
 * (how the src changes in docs/performance.md were measured before/after).
 * Usage: node --import tsx bench/ab.ts DIST_A DIST_B [ROUNDS=6] [SECONDS=4]
 * where DIST_x is a compiled tree containing src/main.js (e.g. dist, or a
 * copy of dist built from the previous commit). Also runs the bare route.
 * Prints req/s and server CPU µs per request, per build, with ratios.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import autocannon from 'autocannon';
import { BENCH_TOKEN, freePort, procCpuSeconds } from './lib/gantry.js';
import { hashToken } from '../src/auth/tokens.js';
import { seedJobs, startBare } from './sections/polls.js';
import { mean, round, say, sleep } from './lib/util.js';

const [distA, distB] = [process.argv[2], process.argv[3]];
if (!distA || !distB) {
  process.stderr.write('usage: ab.ts DIST_A DIST_B [ROUNDS] [SECONDS]\n');
  process.exit(2);
}
const rounds = Number(process.argv[4] ?? 6);
const seconds = Number(process.argv[5] ?? 4);
const connections = Number(process.env.BENCH_POLL_CONNECTIONS ?? 100);
const idsCount = Number(process.env.AB_IDS ?? 200);

async function start(dist: string, dataDir: string) {
  const tokens = path.join(dataDir, 'tokens.json');
  fs.writeFileSync(tokens, JSON.stringify([{ owner: 'bench', scopes: ['submit', 'read', 'cancel'], sha256: hashToken(BENCH_TOKEN) }]));
  const port = await freePort();
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GANTRY_') && v !== undefined) env[k] = v;
  Object.assign(env, {
    GANTRY_DATA_DIR: dataDir, GANTRY_TOKENS_FILE: tokens, GANTRY_PORT: String(port), GANTRY_GPUS: 'none',
    GANTRY_LOG_LEVEL: 'warn', GANTRY_METRICS_PORT: String(await freePort()),
  });
  const proc = spawn(process.execPath, [path.resolve(dist, 'src/main.js')], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not yet
    }
    await sleep(100);
  }
  return { url, pid: proc.pid!, stop: () => proc.kill('SIGTERM') };
}

async function main(): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-ab-'));
  const ids = seedJobs(path.join(tmp, 'a'), 10_000);
  fs.cpSync(path.join(tmp, 'a'), path.join(tmp, 'b'), { recursive: true });
  const a = await start(distA!, path.join(tmp, 'a'));
  const b = await start(distB!, path.join(tmp, 'b'));
  const bare = await startBare(path.join(tmp, 'a', 'gantry.db'));
  const sample = Array.from({ length: idsCount }, (_, i) => ids[Math.floor((i * ids.length) / idsCount)]!);
  const targets = [
    { name: 'A', url: a.url, pid: a.pid, paths: sample.map((id) => `/v1/jobs/${id}`), headers: { authorization: `Bearer ${BENCH_TOKEN}` } },
    { name: 'B', url: b.url, pid: b.pid, paths: sample.map((id) => `/v1/jobs/${id}`), headers: { authorization: `Bearer ${BENCH_TOKEN}` } },
    { name: 'bare', url: bare.url, pid: bare.pid, paths: sample.map((id) => `/bare/jobs/${id}`), headers: {} as Record<string, string> },
  ];
  const res: Record<string, { rps: number[]; cpu: number[]; p99: number[] }> = {};
  for (const t of targets) res[t.name] = { rps: [], cpu: [], p99: [] };
  try {
    for (let r = -1; r < rounds; r++) {
      const order = r % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) {
        const c0 = procCpuSeconds(t.pid);
        const out = await autocannon({ url: t.url, connections, duration: r < 0 ? 2 : seconds, headers: t.headers, requests: t.paths.map((p) => ({ method: 'GET', path: p })) });
        const cpu = procCpuSeconds(t.pid) - c0;
        if (out.non2xx || out.errors) throw new Error(`${t.name}: ${out.non2xx} non-2xx, ${out.errors} errors`);
        if (r < 0) continue;
        res[t.name]!.rps.push(out.requests.average);
        res[t.name]!.cpu.push((cpu * 1e6) / out.requests.total);
        res[t.name]!.p99.push(out.latency.p99);
      }
      if (r >= 0) say(`round ${r + 1}: ${targets.map((t) => `${t.name} ${round(res[t.name]!.rps.at(-1)!, 0)} req/s ${round(res[t.name]!.cpu.at(-1)!, 0)} µs`).join(', ')}`);
    }
    const s = Object.fromEntries(Object.entries(res).map(([k, v]) => [k, { reqPerS: round(mean(v.rps), 0), cpuUsPerReq: round(mean(v.cpu), 1), p99Ms: round(mean(v.p99), 1) }]));
    process.stdout.write(JSON.stringify(s) + '\n');
    process.stdout.write(
      `A/bare req/s ${round(s.A!.reqPerS / s.bare!.reqPerS, 2)}, B/bare req/s ${round(s.B!.reqPerS / s.bare!.reqPerS, 2)}, B/A cpu per request ${round(s.B!.cpuUsPerReq / s.A!.cpuUsPerReq, 2)}\n`,
    );
  } finally {
    a.stop();
    b.stop();
    await bare.stop();
    await sleep(500);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

void main();
