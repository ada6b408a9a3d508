import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';
import autocannon, { type Result } from 'autocannon';
import { specHash } from '../../src/jobs/spec-hash.js';
import type { JobSpec } from '../../src/model/job.js';
import { isTerminal } from '../../src/model/states.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { Store } from '../../src/store/store.js';
import { RUN_SETTINGS } from '../../test/helpers/records.js';
import { cancel, getJob, jobSpec, submit } from '../lib/client.js';
import { BENCH_TOKEN, freePort, type GantryProc, IMAGE, procCpuSeconds, ROOT, startGantry } from '../lib/gantry.js';
import { openLoop } from '../lib/open-loop.js';
import { mean, pool, round, say, sleep } from '../lib/util.js';

/**
 * Stores `n` finished jobs of the bench owner directly in Gantry's store
 * (before Gantry starts), as a busy host would have them. Returns their ids.
 */
export async function seedJobs(dataDir: string, n: number): Promise<string[]> {
  const store = await openSqliteStore(dataDir);
  try {
    return await seedStore(store, n, 1);
  } finally {
    await store.close();
  }
}

/** Stores `n` finished jobs of the bench owner in any store, `concurrency` writes at a time. Returns their ids. */
export async function seedStore(store: Store, n: number, concurrency: number): Promise<string[]> {
  const t = Date.now() - n * 1000;
  return pool(n, concurrency, async (i) => {
    const id = crypto.randomUUID();
    const spec = { image: IMAGE, command: ['sh', '-c', `echo job ${i}`], labels: { team: `t${i % 10}` } } as JobSpec;
    await store.jobs.insert({
      id,
      owner: 'bench',
      spec,
      specHash: specHash(spec),
      idempotencyKey: null,
      requestId: null,
      createdAt: new Date(t + i * 1000).toISOString(),
      settings: RUN_SETTINGS,
    });
    await store.jobs.update(id, {
      state: 'succeeded',
      exitCode: 0,
      result: `job ${i}`,
      containerId: crypto.randomBytes(32).toString('hex'),
      startedAt: new Date(t + i * 1000 + 200).toISOString(),
      finishedAt: new Date(t + i * 1000 + 450).toISOString(),
    });
    return id;
  });
}

export interface BareServer {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startBare(dbFile: string): Promise<BareServer> {
  const port = await freePort();
  return serveFrom([path.join(ROOT, 'bench/bare-server.mjs'), String(port), dbFile], port, 'bare server');
}

/**
 * Starts a baseline server as a child process (node with `args`), which
 * prints a line once it listens on `port`; resolves once it has.
 */
export async function serveFrom(args: string[], port: number, what: string): Promise<BareServer> {
  const proc: ChildProcess = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.once('data', () => resolve());
    proc.once('exit', (code) => reject(new Error(`${what} exited (${code})`)));
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return {
    url: `http://127.0.0.1:${port}`,
    pid: proc.pid!,
    async stop() {
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

interface Target {
  name: string;
  url: string;
  pid: number;
  paths: string[];
  headers: Record<string, string>;
  /** The one status every answer must have (default 200). */
  status?: number;
}

/** Throws unless every answer of the run had the target's status. */
function checkAnswers(t: Target, res: Result): void {
  const codes = Object.keys(res.statusCodeStats);
  if (res.errors || res.timeouts || codes.length !== 1 || codes[0] !== String(t.status ?? 200)) {
    throw new Error(`${t.name}: status codes ${JSON.stringify(res.statusCodeStats)}, ${res.errors + res.timeouts} errors`);
  }
}

/** The ids the polls rotate over: up to 200, spread evenly over the stored jobs. */
function pollSample(ids: readonly string[]): string[] {
  const n = Math.min(200, ids.length);
  return Array.from({ length: n }, (_, i) => ids[Math.floor((i * ids.length) / n)]!);
}

function gantryTarget(name: string, g: { url: string; pid: number }, sample: readonly string[]): Target {
  return { name, url: g.url, pid: g.pid, paths: sample.map((id) => `/v1/jobs/${id}`), headers: { authorization: `Bearer ${BENCH_TOKEN}` } };
}

/** The stock HttpSensor's poke of jobs that have not ended: 404 job-pending. */
function sensorTarget(name: string, g: { url: string; pid: number }, pending: readonly string[]): Target {
  return {
    name,
    url: g.url,
    pid: g.pid,
    paths: pending.map((id) => `/v1/jobs/${id}/wait`),
    headers: { authorization: `Bearer ${BENCH_TOKEN}` },
    status: 404,
  };
}

/** Gantry's settings for sensor polls of `pendingJobs` (one holds the only run slot). */
const SENSOR_ENV = {
  GANTRY_MAX_RUNNING: '1',
  // The endpoint holds a second poll of the same job within this interval
  // by design; what is measured here is the cost of an answer.
  GANTRY_POLL_MIN_INTERVAL_MS: '0',
};

/**
 * `n` jobs that do not end while polled: one running (sleep) holding the only
 * run slot (SENSOR_ENV), the rest queued behind it. cancel() ends them all.
 */
async function pendingJobs(g: GantryProc, n: number): Promise<{ ids: string[]; cancel(): Promise<void> }> {
  if (g.env.GANTRY_MAX_RUNNING !== '1' || g.env.GANTRY_POLL_MIN_INTERVAL_MS !== '0') throw new Error('pendingJobs needs SENSOR_ENV');
  const running = await submit(g.url, BENCH_TOKEN, jobSpec(['sleep', '3600']));
  const queued = await pool(n - 1, 8, () => submit(g.url, BENCH_TOKEN, jobSpec(['true'])));
  const ids = [running.id, ...queued.map((j) => j.id)];
  const cancelAll = async () => {
    await pool(ids.length, 8, (i) => cancel(g.url, BENCH_TOKEN, ids[i]!));
    for (const id of ids) {
      while (!isTerminal((await getJob(g.url, BENCH_TOKEN, id)).state)) await sleep(100);
    }
  };
  try {
    while ((await getJob(g.url, BENCH_TOKEN, running.id)).state !== 'running') await sleep(100);
    for (const j of queued) {
      const state = (await getJob(g.url, BENCH_TOKEN, j.id)).state;
      if (state !== 'queued') throw new Error(`job ${j.id} is ${state}, not queued`);
    }
  } catch (err) {
    await cancelAll();
    throw err;
  }
  return { ids, cancel: cancelAll };
}

/** `bare`: the small-JSON route; `bareSqlite`: the same with one SQLite point read. */
function bareTarget(name: 'bare' | 'bareSqlite', bare: BareServer, sample: readonly string[]): Target {
  const prefix = name === 'bare' ? '/bare/jobs/' : '/bare-sqlite/jobs/';
  return { name, url: bare.url, pid: bare.pid, paths: sample.map((id) => prefix + id), headers: {} };
}

/** The bare route after a busy loop of `spinUs` µs per request (bench/bare-server.mjs). */
function spinTarget(bare: BareServer, sample: readonly string[], spinUs: number): Target {
  return {
    name: 'bareMatched',
    url: bare.url,
    pid: bare.pid,
    paths: sample.map((id) => `/spin/${round(spinUs, 1)}/jobs/${id}`),
    headers: {},
  };
}

async function cannon(t: Target, seconds: number, connections: number): Promise<Result> {
  return autocannon({
    url: t.url,
    connections,
    duration: seconds,
    headers: t.headers,
    // A fixed rotation of ids (prebuilt requests, so the load generator does
    // the same little work for every target).
    requests: t.paths.map((p) => ({ method: 'GET', path: p })),
  });
}

export interface PollsConfig {
  warmupSeconds: number;
  seconds: number;
  rounds: number;
  connections: number;
  /** Offered load (req/s) of the latency rounds; 0 skips them. */
  fixedRate: number;
}

/**
 * Gantry's longest event-loop delay and major GCs since the previous call,
 * from its open metrics port (prom-client resets the delay histogram on
 * each scrape); null when Gantry runs without GANTRY_METRICS=open.
 */
async function loopStats(g: GantryProc): Promise<{ lagMaxMs: number; majorGcs: number; majorGcMs: number } | null> {
  if (g.env.GANTRY_METRICS !== 'open') return null;
  const text = await (await fetch(`http://127.0.0.1:${g.env.GANTRY_METRICS_PORT}/metrics`)).text();
  const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN);
  return {
    lagMaxMs: num(/^nodejs_eventloop_lag_max_seconds (\S+)$/m) * 1000,
    majorGcs: num(/^nodejs_gc_duration_seconds_count\{kind="major"\} (\S+)$/m),
    majorGcMs: num(/^nodejs_gc_duration_seconds_sum\{kind="major"\} (\S+)$/m) * 1000,
  };
}

/** Authenticated GET /v1/jobs/{id} vs a bare fastify route, alternating rounds. */
export async function benchPolls(g: GantryProc, bare: BareServer, ids: string[], cfg: PollsConfig) {
  const sample = pollSample(ids);
  const targets: Target[] = [gantryTarget('gantry', g, sample), bareTarget('bare', bare, sample), bareTarget('bareSqlite', bare, sample)];
  // Check every target answers 200 before loading it.
  for (const t of targets) {
    const r = await fetch(t.url + t.paths[0], { headers: t.headers });
    await r.text();
    if (r.status !== 200) throw new Error(`${t.name}: ${t.paths[0]} answered ${r.status}`);
  }
  // Right after the jobs section Gantry's polls cost more for a while, and
  // the measured rounds after idle gaps can cost more again (not explained
  // yet: docs/performance.md). The warm-up's own figures are a row of the
  // table, so that transient stays visible.
  say(`polls: warm-up, ${cfg.warmupSeconds} s per target`);
  const warmup: Record<string, { reqPerS: number; cpuUsPerReq: number }> = {};
  for (const t of targets) {
    const cpu0 = procCpuSeconds(t.pid);
    const res = await cannon(t, cfg.warmupSeconds, cfg.connections);
    warmup[t.name] = {
      reqPerS: round(res.requests.average, 0),
      cpuUsPerReq: round(((procCpuSeconds(t.pid) - cpu0) * 1e6) / Math.max(1, res.requests.total), 1),
    };
  }
  const out: Record<string, { reqPerS: number[]; p99: number[]; p50: number[]; errors: number; non2xx: number; cpuPerKReq: number[] }> = {};
  for (const t of targets) out[t.name] = { reqPerS: [], p99: [], p50: [], errors: 0, non2xx: 0, cpuPerKReq: [] };
  for (let r = 0; r < cfg.rounds; r++) {
    const order = r % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) {
      say(`polls: ${t.name}, ${cfg.seconds} s, ${cfg.connections} connections (round ${r + 1}/${cfg.rounds})`);
      const cpu0 = procCpuSeconds(t.pid);
      const res = await cannon(t, cfg.seconds, cfg.connections);
      const cpu = procCpuSeconds(t.pid) - cpu0;
      const o = out[t.name]!;
      o.reqPerS.push(res.requests.average);
      o.p99.push(res.latency.p99);
      o.p50.push(res.latency.p50);
      o.errors += res.errors + res.timeouts;
      o.non2xx += res.non2xx;
      o.cpuPerKReq.push((cpu * 1000 * 1000) / Math.max(1, res.requests.total));
      await sleep(500);
    }
  }
  // Latency at a fixed load below both targets' capacity: what a poller sees
  // on a busy host, rather than queueing at saturation (100 connections
  // always in flight make latency ≈ 100 / throughput, Little's law).
  const atRate: Record<string, { p50: number[]; p99: number[]; reqPerS: number[]; errors: number; non2xx: number; gantryLoop: unknown[] }> =
    {};
  const rated = targets.filter((t) => t.name !== 'bareSqlite');
  for (const t of rated) atRate[t.name] = { p50: [], p99: [], reqPerS: [], errors: 0, non2xx: 0, gantryLoop: [] };
  if (cfg.fixedRate > 0) {
    // The load generator's own first seconds (JIT) put ~100 ms stalls into
    // whichever target comes first: warm it on each target, results dropped.
    say(`polls: fixed-rate warm-up, 2 s per target`);
    for (const t of rated)
      await openLoop({ url: t.url, paths: t.paths, headers: t.headers, rate: cfg.fixedRate, seconds: 2, connections: cfg.connections });
  }
  for (let r = 0; cfg.fixedRate > 0 && r < cfg.rounds; r++) {
    for (const t of r % 2 === 0 ? rated : [...rated].reverse()) {
      say(`polls: ${t.name} at ${cfg.fixedRate} req/s, ${cfg.seconds} s (round ${r + 1}/${cfg.rounds})`);
      const before = t.name === 'gantry' ? await loopStats(g) : null;
      const res = await openLoop({
        url: t.url,
        paths: t.paths,
        headers: t.headers,
        rate: cfg.fixedRate,
        seconds: cfg.seconds,
        connections: cfg.connections,
      });
      const o = atRate[t.name]!;
      // Whether a slow round was Gantry's own event loop (and GC) or the machine.
      const after = before ? await loopStats(g) : null;
      if (before && after) {
        o.gantryLoop.push({
          lagMaxMs: round(after.lagMaxMs, 1),
          majorGcs: after.majorGcs - before.majorGcs,
          majorGcMs: round(after.majorGcMs - before.majorGcMs, 1),
        });
      }
      o.p50.push(res.p50Ms);
      o.p99.push(res.p99Ms);
      o.reqPerS.push(res.reqPerS);
      o.errors += res.errors;
      o.non2xx += res.non2xx;
      await sleep(500);
    }
  }
  const fixedRate = Object.fromEntries(
    Object.entries(atRate).map(([name, o]) => [
      name,
      {
        rate: cfg.fixedRate,
        reqPerS: round(mean(o.reqPerS), 0),
        p50Ms: round(mean(o.p50), 2),
        p99Ms: round(Math.max(...o.p99), 1),
        p99sMs: o.p99.map((x) => round(x, 1)),
        errors: o.errors,
        non2xx: o.non2xx,
        ...(o.gantryLoop.length ? { gantryLoop: o.gantryLoop } : {}),
      },
    ]),
  );
  const saturated = Object.fromEntries(
    Object.entries(out).map(([name, o]) => [
      name,
      {
        reqPerS: round(mean(o.reqPerS), 0),
        p99Ms: round(Math.max(...o.p99), 1),
        p50Ms: round(mean(o.p50), 1),
        serverCpuMsPer1kReq: round(mean(o.cpuPerKReq), 1),
        rounds: o.reqPerS.map((x) => round(x, 0)),
        errors: o.errors,
        non2xx: o.non2xx,
      },
    ]),
  );
  return { warmup, saturated, fixedRate };
}

export interface FreshPollsConfig {
  /** Compiled Gantry trees to compare (each gets a fresh process per round). */
  dists: string[];
  /** One data directory per dist, each holding a seeded store. */
  dataDirs: string[];
  ids: string[];
  rounds: number;
  warmupSeconds: number;
  seconds: number;
  connections: number;
  /**
   * Also measure, last in every round, the bare route made to cost what A's
   * poll cost in that round (a busy loop of A's CPU µs per request minus the
   * bare route's): 'bareMatched'. Its latency is what a poll's CPU alone
   * gives at saturation on one Node thread.
   */
  cpuMatchedBare?: boolean;
  /**
   * 'sensor': each Gantry is polled on GET /v1/jobs/{id}/wait for 200 jobs
   * that do not end (404 job-pending; SENSOR_ENV), instead of
   * GET /v1/jobs/{id} for the stored ones.
   */
  endpoint?: 'status' | 'sensor';
}

export interface FreshPollsResult {
  /** Per target ('A', 'B', … in the order of dists, then 'bare', then 'bareMatched'): one value per round. */
  rounds: Record<string, { reqPerS: number[]; cpuUsPerReq: number[]; p99Ms: number[] }>;
}

/**
 * Status polls on fresh processes: every round starts each Gantry and a bare
 * server anew, warms each up, then measures each in turn (order reversed
 * every other round), and stops them. A process's JIT state is settled
 * during its start-up and kept for its life (in some Gantry processes the
 * tick-object literal of Node's nextTick goes megamorphic, 5 % of a poll:
 * docs/performance.md, fourth pass), so rounds of one process cannot average
 * it out; rounds of fresh processes do. Used by bench/ab.ts to compare
 * builds, and by the polls section next to its long-running Gantry.
 */
export async function benchFreshPolls(cfg: FreshPollsConfig): Promise<FreshPollsResult> {
  const names = cfg.dists.map((_, i) => String.fromCharCode(65 + i));
  const sample = pollSample(cfg.ids);
  const out: FreshPollsResult['rounds'] = {};
  const reported = [...names, 'bare', ...(cfg.cpuMatchedBare ? ['bareMatched'] : [])];
  for (const n of reported) out[n] = { reqPerS: [], cpuUsPerReq: [], p99Ms: [] };
  for (let r = 0; r < cfg.rounds; r++) {
    const gantries: GantryProc[] = [];
    const pending: { ids: string[]; cancel(): Promise<void> }[] = [];
    let bare: BareServer | undefined;
    try {
      const sensor = cfg.endpoint === 'sensor';
      for (let i = 0; i < cfg.dists.length; i++) {
        const g = await startGantry(cfg.dataDirs[i]!, sensor ? SENSOR_ENV : {}, `fresh ${names[i]} ${r + 1}`, cfg.dists[i]);
        gantries.push(g);
        if (sensor) pending.push(await pendingJobs(g, sample.length));
      }
      bare = await startBare(path.join(cfg.dataDirs[0]!, 'gantry.db'));
      const targets: Target[] = [
        ...gantries.map((g, i) => (sensor ? sensorTarget(names[i]!, g, pending[i]!.ids) : gantryTarget(names[i]!, g, sample))),
        bareTarget('bare', bare, sample),
      ];
      const order = r % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) await cannon(t, cfg.warmupSeconds, cfg.connections);
      const measure = async (t: Target) => {
        const cpu0 = procCpuSeconds(t.pid);
        const res = await cannon(t, cfg.seconds, cfg.connections);
        const cpu = procCpuSeconds(t.pid) - cpu0;
        checkAnswers(t, res);
        const o = out[t.name]!;
        o.reqPerS.push(round(res.requests.average, 0));
        o.cpuUsPerReq.push(round((cpu * 1e6) / Math.max(1, res.requests.total), 1));
        o.p99Ms.push(res.latency.p99);
      };
      for (const t of order) await measure(t);
      if (cfg.cpuMatchedBare) {
        const spin = spinTarget(bare, sample, Math.max(0, out.A!.cpuUsPerReq.at(-1)! - out.bare!.cpuUsPerReq.at(-1)!));
        await cannon(spin, cfg.warmupSeconds, cfg.connections);
        await measure(spin);
      }
    } finally {
      for (const p of pending) await p.cancel();
      for (const g of gantries) await g.stop();
      await bare?.stop();
    }
    say(
      `fresh polls, round ${r + 1}/${cfg.rounds}: ${reported.map((n) => `${n} ${out[n]!.reqPerS.at(-1)} req/s ${out[n]!.cpuUsPerReq.at(-1)} µs p99 ${out[n]!.p99Ms.at(-1)} ms`).join(', ')}`,
    );
  }
  return { rounds: out };
}
