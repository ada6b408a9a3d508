/**
 * A/B of Gantry builds on the status-poll path, alternating in one run
 * (how the src changes in docs/performance.md were measured before/after).
 * Usage: [AB_ROUNDS=6] [AB_SECONDS=4] [AB_LOG_LEVEL=info] node --import tsx bench/ab.ts DIST_A DIST_B [DIST_C ...]
 * where DIST_x is a compiled tree containing src/main.js (e.g. dist, or a
 * copy of dist built from the previous commit). Also runs the bare route.
 * Prints req/s and server CPU µs per request, per build, with ratios to A
 * and to the bare route.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import autocannon from 'autocannon';
import { BENCH_TOKEN, freePort, procCpuSeconds, stdoutSink } from './lib/gantry.js';
import { hashToken } from '../src/auth/tokens.js';
import { seedJobs, startBare } from './sections/polls.js';
import { mean, round, say, sleep } from './lib/util.js';

const dists = process.argv.slice(2);
if (dists.length < 2) {
  process.stderr.write('usage: ab.ts DIST_A DIST_B [DIST_C ...]\n');
  process.exit(2);
}
const rounds = Number(process.env.AB_ROUNDS ?? 6);
const seconds = Number(process.env.AB_SECONDS ?? 4);
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
    GANTRY_METRICS_PORT: String(await freePort()),
    // Gantry's default level (info) unless AB_LOG_LEVEL says otherwise.
    ...(process.env.AB_LOG_LEVEL ? { GANTRY_LOG_LEVEL: process.env.AB_LOG_LEVEL } : {}),
  });
  // stdout is a pipe read by another process, as under a process manager or Docker.
  const sink = stdoutSink(path.join(dataDir, 'gantry.stdout.log'));
  const proc = spawn(process.execPath, [path.resolve(dist, 'src/main.js')], { env, stdio: ['ignore', sink.stdin, 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not yet
    }
    await sleep(100);
  }
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return {
    url,
    pid: proc.pid!,
    async stop() {
      proc.kill('SIGTERM');
      await exited;
      await sink.stop();
    },
  };
}

async function main(): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-ab-'));
  const names = dists.map((_, i) => String.fromCharCode(65 + i));
  const ids = seedJobs(path.join(tmp, 'A'), 10_000);
  for (const n of names.slice(1)) fs.cpSync(path.join(tmp, 'A'), path.join(tmp, n), { recursive: true });
  const servers = await Promise.all(dists.map((d, i) => start(d, path.join(tmp, names[i]!))));
  const bare = await startBare(path.join(tmp, 'A', 'gantry.db'));
  const sample = Array.from({ length: idsCount }, (_, i) => ids[Math.floor((i * ids.length) / idsCount)]!);
  const targets = [
    ...servers.map((g, i) => ({ name: names[i]!, url: g.url, pid: g.pid, paths: sample.map((id) => `/v1/jobs/${id}`), headers: { authorization: `Bearer ${BENCH_TOKEN}` } as Record<string, string> })),
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
      if (r >= 0) say(`round ${r + 1}: ${targets.map((t) => `${t.name} ${round(res[t.name]!.rps.at(-1)!, 0)} req/s ${round(res[t.name]!.cpu.at(-1)!, 0)} µs p99 ${res[t.name]!.p99.at(-1)} ms`).join(', ')}`);
    }
    const s = Object.fromEntries(Object.entries(res).map(([k, v]) => [k, { reqPerS: round(mean(v.rps), 0), cpuUsPerReq: round(mean(v.cpu), 1), p99Ms: round(mean(v.p99), 1) }]));
    process.stdout.write(JSON.stringify(s) + '\n');
    for (const n of names) {
      process.stdout.write(
        `${n} (${dists[names.indexOf(n)]}): ${s[n]!.reqPerS} req/s = ${round(s[n]!.reqPerS / s.bare!.reqPerS, 2)}× bare, ${s[n]!.cpuUsPerReq} µs CPU/request = ${round(s[n]!.cpuUsPerReq / s.A!.cpuUsPerReq, 2)}× A, p99 ${s[n]!.p99Ms} ms\n`,
      );
    }
  } finally {
    await Promise.all(servers.map((g) => g.stop()));
    await bare.stop();
    await sleep(500);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

void main();
