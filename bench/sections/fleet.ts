import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import autocannon, { type Result } from 'autocannon';
import pg from 'pg';
import type { Job } from '../../src/model/job.js';
import { isTerminal } from '../../src/model/states.js';
import { openPostgresStore } from '../../src/store/postgres/index.js';
import { type PrivateDockerd, startDockerd } from '../../test/helpers/dockerd.js';
import { createDatabase, startPostgres, type TestPostgres } from '../../test/helpers/postgres.js';
import { cancel, followSse, getJob, jobSpec, submit } from '../lib/client.js';
import { CpuMeter } from '../lib/cpu.js';
import { rawOptions, runRaw } from '../lib/docker.js';
import { BENCH_TOKEN, freePort, type GantryProc, procCpuSeconds, startGantry } from '../lib/gantry.js';
import { MB, mean, median, now, percentile, pool, round, say, sleep, within } from '../lib/util.js';
import { LINE_BYTES, logCommand } from './logs.js';
import { type BareServer, seedJobs, seedStore, serveFrom, startBare } from './polls.js';

export interface FleetConfig {
  /** Trivial jobs per side per block (BENCH_FLEET_JOBS). */
  jobs: number;
  /** Jobs in flight at once: 1 (one at a time) and 4. */
  concurrency: number[];
  /** Blocks per side at concurrency > 1 (alternating, order reversed every other round). */
  blockRounds: number;
  /** Finished jobs seeded into PostgreSQL before the fleet starts. */
  seedJobs: number;
  polls: { warmupSeconds: number; seconds: number; rounds: number; connections: number };
  logMb: number;
  logRounds: number;
  leaseSeconds: number;
  deathRounds: number;
  /** pg_stat_statements on (a restart of PostgreSQL before the fleet starts): the top statements of each phase in the JSON. */
  pgStats: boolean;
}

interface Node {
  name: string;
  engine: PrivateDockerd;
  dataDir: string;
  env: Record<string, string>;
  g: GantryProc;
}

const TRIVIAL = ['true'];

/** A trivial job followed over SSE from submit to end, noting when the job is first seen with a node. */
interface Traced {
  /** POST sent → the first `status` event with `node` set or a state past `queued` (ms). */
  claimMs: number;
  /** POST sent → `end` event (ms). */
  clientMs: number;
  /** Gantry's own createdAt → finishedAt (ms). */
  serverMs: number;
  submittedTo: string;
  ranOn: string | null;
}

/** Follows a job's SSE stream, parsing every event (small jobs only). */
function traceSse(url: string, jobId: string, onStatus: (job: Job, t: number) => void): Promise<{ end: Job; tEnd: number }> {
  return new Promise((resolve, reject) => {
    const u = new URL(`${url}/v1/jobs/${jobId}/logs`);
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        agent: false,
        headers: { authorization: `Bearer ${BENCH_TOKEN}`, accept: 'text/event-stream' },
      },
      (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`SSE ${jobId}: ${res.statusCode}`));
          res.resume();
          return;
        }
        let buf = '';
        let end: Job | null = null;
        let tEnd = 0;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          const t = now();
          buf += chunk;
          let cut: number;
          while ((cut = buf.indexOf('\n\n')) !== -1) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let event = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (event === 'status') onStatus(JSON.parse(data) as Job, t);
            else if (event === 'end') {
              end = JSON.parse(data) as Job;
              tEnd = t;
            }
          }
        });
        res.on('end', () => (end ? resolve({ end, tEnd }) : reject(new Error(`SSE ${jobId} closed without an end event`))));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function tracedJob(node: { name: string; g: GantryProc }): Promise<Traced> {
  const t0 = now();
  const job = await submit(node.g.url, BENCH_TOKEN, jobSpec(TRIVIAL));
  let tClaim: number | null = job.node !== null || job.state !== 'queued' ? now() : null;
  const r = await within(
    traceSse(node.g.url, job.id, (j, t) => {
      if (tClaim === null && (j.node !== null || j.state !== 'queued')) tClaim = t;
    }),
    120_000,
    `job ${job.id}`,
  );
  if (r.end.state !== 'succeeded') throw new Error(`job ${job.id} ended ${r.end.state}: ${r.end.reason}`);
  return {
    claimMs: (tClaim ?? r.tEnd) - t0,
    clientMs: r.tEnd - t0,
    serverMs: Date.parse(r.end.finishedAt!) - Date.parse(r.end.createdAt),
    submittedTo: node.name,
    ranOn: r.end.node,
  };
}

function summary(ms: number[]) {
  return {
    n: ms.length,
    p50: round(median(ms), 1),
    p99: round(percentile(ms, 99), 1),
    min: round(Math.min(...ms), 1),
    max: round(Math.max(...ms), 1),
  };
}

/** Seeds `n` finished jobs of the bench owner through the PostgreSQL store, as seedJobs does for SQLite. */
async function seedPostgres(url: string, n: number): Promise<string[]> {
  const store = await openPostgresStore({ url, node: 'bench-seed' });
  try {
    return await seedStore(store, n, 8);
  } finally {
    await store.close();
  }
}

/**
 * VACUUM ANALYZE after seeding: each seeded job was inserted `queued` and
 * then updated, which leaves 10,000 dead `queued` entries in the queue's
 * index until autovacuum comes by (up to a minute later, or never during a
 * short run). Every scheduler pass would walk them (0.7–1.5 ms a queue scan
 * here, against 0.01 ms vacuumed). A running fleet pays that only for the
 * jobs finished since autovacuum last passed, not for a seeded history
 * (docs/performance.md, "A fleet of three nodes").
 */
async function vacuum(url: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query('VACUUM (ANALYZE) jobs');
    await c.query('VACUUM (ANALYZE) job_labels');
  } finally {
    await c.end();
  }
}

/**
 * A bare fastify route doing one PostgreSQL point read of the jobs table
 * (a pool of 10, as Gantry's): the floor of a poll that reads the database.
 * Inline, so that this section is one file; same fastify and pg as Gantry.
 */
const BARE_PG = `
import Fastify from 'fastify';
import pg from 'pg';
const [port, url] = process.argv.slice(1);
const db = new pg.Pool({ connectionString: url, max: 10 });
const app = Fastify({ logger: false });
app.get('/bare-pg/jobs/:id', async (request, reply) => {
  const { rows } = await db.query({ name: 'get', text: 'SELECT id, state, exit_code AS "exitCode" FROM jobs WHERE id = $1', values: [request.params.id] });
  if (!rows[0]) return reply.code(404).send({ error: 'not found' });
  return rows[0];
});
await app.listen({ host: '127.0.0.1', port: Number(port) });
process.stdout.write('ready\\n');
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => app.close().then(() => db.end()).then(() => process.exit(0)));
`;

async function startBarePg(url: string): Promise<BareServer> {
  const port = await freePort();
  return serveFrom(['--input-type=module', '-e', BARE_PG, String(port), url], port, 'bare pg server');
}

interface PollTarget {
  name: string;
  url: string;
  pid: number;
  paths: string[];
  headers: Record<string, string>;
}

function checkAnswers(t: PollTarget, res: Result): void {
  const codes = Object.keys(res.statusCodeStats);
  if (res.errors || res.timeouts || codes.length !== 1 || codes[0] !== '200') {
    throw new Error(`${t.name}: status codes ${JSON.stringify(res.statusCodeStats)}, ${res.errors + res.timeouts} errors`);
  }
}

function cannon(t: PollTarget, seconds: number, connections: number): Promise<Result> {
  return autocannon({
    url: t.url,
    connections,
    duration: seconds,
    headers: t.headers,
    requests: t.paths.map((p) => ({ method: 'GET', path: p })),
  });
}

/** The top statements by total time since the last reset (pg_stat_statements), then a reset. */
async function pgTop(url: string | null, limit = 8): Promise<unknown[] | null> {
  if (!url) return null;
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query(
      `SELECT calls, round(total_exec_time::numeric, 1) AS total_ms, round(mean_exec_time::numeric, 4) AS mean_ms, rows,
              left(regexp_replace(query, '\\s+', ' ', 'g'), 160) AS query
       FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
       ORDER BY total_exec_time DESC LIMIT ${limit}`,
    );
    await c.query('SELECT pg_stat_statements_reset()');
    return rows;
  } finally {
    await c.end();
  }
}

async function pgStatsReset(url: string | null): Promise<void> {
  if (url) await pgTop(url, 0);
}

/**
 * CPU seconds used so far by this cluster's PostgreSQL: its postmaster, its
 * live backends and those that have exited (reaped by the postmaster, so
 * counted in its cutime and cstime). Other clusters on the machine (other
 * users' tests) are left out.
 */
export function pgCpuSeconds(db: TestPostgres): number {
  let postmaster: number;
  try {
    postmaster = Number(fs.readFileSync(path.join(db.dataDir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return Number.NaN;
  }
  // Fields after the command's closing parenthesis: 1 ppid, 11 utime, 12 stime, 13 cutime, 14 cstime.
  const fields = (pid: number | string) => {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  };
  let ticks = 0;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const f = fields(d);
      if (Number(d) === postmaster) ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
      else if (Number(f[1]) === postmaster) ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // gone
    }
  }
  return ticks / 100; // USER_HZ
}

async function waitState(
  g: GantryProc,
  id: string,
  pred: (j: Job) => boolean,
  ms: number,
  everyMs = 100,
): Promise<{ job: Job; t: number }> {
  const deadline = Date.now() + ms;
  for (;;) {
    const j = await getJob(g.url, BENCH_TOKEN, id);
    const t = now();
    if (pred(j)) return { job: j, t };
    if (Date.now() > deadline) throw new Error(`job ${id}: still ${j.state} after ${ms} ms (${j.reason ?? ''})`);
    await sleep(everyMs);
  }
}

/** Submits, retrying while the named node is not (yet) registered as live (422 at submit). */
async function submitTo(g: GantryProc, spec: Record<string, unknown>): Promise<Job> {
  for (let i = 0; ; i++) {
    try {
      return await submit(g.url, BENCH_TOKEN, spec);
    } catch (err) {
      if (i >= 50 || !/^submit: 422/.test((err as Error).message)) throw err;
      await sleep(200);
    }
  }
}

/** The section's processes, stopped by `cleanup` (also on SIGINT, from run.ts). */
const live: { nodes: Node[]; engines: PrivateDockerd[]; pg: TestPostgres | null; servers: BareServer[] } = {
  nodes: [],
  engines: [],
  pg: null,
  servers: [],
};

let cleaning: Promise<void> | null = null;

/** Stops everything the section started; a call while one runs (SIGINT, then the section's finally) waits for it. */
export function cleanupFleet(): Promise<void> {
  cleaning ??= stopAll().finally(() => {
    cleaning = null;
  });
  return cleaning;
}

async function stopAll(): Promise<void> {
  const { nodes, engines, servers } = live;
  live.nodes = [];
  live.servers = [];
  live.engines = [];
  await Promise.allSettled(servers.map((s) => s.stop()));
  // Gantrys first (SIGTERM, so that BENCH_CPU_PROF profiles are written), then engines, then the database.
  await Promise.allSettled(nodes.map((n) => n.g.stop()));
  await Promise.allSettled(engines.map((e) => e.destroy()));
  const db = live.pg;
  live.pg = null;
  await db?.destroy();
}

export async function benchFleet(tmp: string, cfg: FleetConfig) {
  try {
    return await run(tmp, cfg);
  } finally {
    say('fleet: cleaning up (Gantrys, engines, PostgreSQL)');
    await cleanupFleet();
  }
}

async function run(tmp: string, cfg: FleetConfig) {
  say('fleet: PostgreSQL and four private Docker engines');
  const db = await startPostgres(null);
  live.pg = db;
  if (cfg.pgStats) {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    await c.query(`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`);
    await c.end();
    await db.restart();
  }
  const url = await createDatabase(db.url, 'fleet');
  const statsUrl = cfg.pgStats ? url : null;
  if (statsUrl) {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query('CREATE EXTENSION pg_stat_statements');
    await c.end();
  }
  const enginesP = Promise.allSettled([0, 1, 2, 3].map(() => startDockerd(null))).then((rs) => {
    for (const r of rs) if (r.status === 'fulfilled') live.engines.push(r.value);
    const failed = rs.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    return rs.map((r) => (r as PromiseFulfilledResult<PrivateDockerd>).value);
  });
  const t0 = now();
  const singleDir = path.join(tmp, 'fleet-single');
  // All settle before a failure is thrown, so that cleanup sees every engine started.
  const [seeded, seededSingle, started] = await Promise.allSettled([
    seedPostgres(url, cfg.seedJobs).then(async (ids) => {
      await vacuum(url);
      return ids;
    }),
    // The single node's SQLite holds as many finished jobs, so both sides schedule over the same store size.
    seedJobs(singleDir, cfg.seedJobs),
    enginesP,
  ]);
  for (const r of [seeded, seededSingle, started]) if (r.status === 'rejected') throw r.reason;
  const ids = (seeded as PromiseFulfilledResult<string[]>).value;
  const singleIds = (seededSingle as PromiseFulfilledResult<string[]>).value;
  const engines = (started as PromiseFulfilledResult<PrivateDockerd[]>).value;
  say(
    `fleet: seeded ${ids.length} finished jobs into PostgreSQL (and as many into the single node's SQLite) and started the engines in ${round((now() - t0) / 1000, 1)} s`,
  );

  const common: Record<string, string> = {
    GANTRY_NODE_LEASE_SECONDS: String(cfg.leaseSeconds),
    GANTRY_LOG_MAX_BYTES: String(Math.max(300, cfg.logMb + 50) * 1024 * 1024),
    // BENCH_FLEET_RELAY=off: every node listens to PostgreSQL itself (the comparison for the change relay).
    ...(process.env.BENCH_FLEET_RELAY ? { GANTRY_FLEET_RELAY: process.env.BENCH_FLEET_RELAY } : {}),
  };
  const names = ['a', 'b', 'c'];
  const fleet: Node[] = [];
  for (const [i, name] of names.entries()) {
    const dataDir = path.join(tmp, `fleet-${name}`);
    const env = { ...common, GANTRY_DATABASE_URL: url, GANTRY_NODE_NAME: name, GANTRY_DOCKER_SOCKET: engines[i]!.socket };
    const node: Node = { name, engine: engines[i]!, dataDir, env, g: await startGantry(dataDir, env, `fleet ${name}`) };
    fleet.push(node);
    live.nodes.push(node);
  }
  const singleEnv = { ...common, GANTRY_NODE_NAME: 'single', GANTRY_DOCKER_SOCKET: engines[3]!.socket };
  const single: Node = {
    name: 'single',
    engine: engines[3]!,
    dataDir: singleDir,
    env: singleEnv,
    g: await startGantry(singleDir, singleEnv, 'single sqlite'),
  };
  live.nodes.push(single);
  const [a, b, c] = fleet as [Node, Node, Node];

  // ---- 1 and 5: submit → terminal, and submit → claim ----
  say('fleet: warm-up, 2 jobs per node');
  for (const n of [...fleet, single]) for (let i = 0; i < 2; i++) await tracedJob(n);
  await pgStatsReset(statsUrl);
  const latency: Record<string, { fleet: Traced[]; single: Traced[]; fleetBlockS: number[]; singleBlockS: number[] }> = {};
  for (const conc of cfg.concurrency) {
    const r = { fleet: [] as Traced[], single: [] as Traced[], fleetBlockS: [] as number[], singleBlockS: [] as number[] };
    latency[conc] = r;
    if (conc === 1) {
      say(`fleet: ${cfg.jobs} jobs one at a time, round-robin over the fleet's nodes, alternating with the single node`);
      for (let i = 0; i < cfg.jobs; i++) {
        const steps = [
          async () => r.fleet.push(await tracedJob(fleet[i % fleet.length]!)),
          async () => r.single.push(await tracedJob(single)),
        ];
        if (i % 2 === 1) steps.reverse();
        for (const s of steps) await s();
      }
      continue;
    }
    for (let k = 0; k < cfg.blockRounds; k++) {
      say(`fleet: ${cfg.jobs} jobs ${conc} at a time, round ${k + 1}/${cfg.blockRounds}`);
      const blocks = [
        async () => {
          const t = now();
          r.fleet.push(...(await pool(cfg.jobs, conc, (i) => tracedJob(fleet[i % fleet.length]!))));
          r.fleetBlockS.push((now() - t) / 1000);
        },
        async () => {
          const t = now();
          r.single.push(...(await pool(cfg.jobs, conc, () => tracedJob(single))));
          r.singleBlockS.push((now() - t) / 1000);
        },
      ];
      if (k % 2 === 1) blocks.reverse();
      for (const blk of blocks) await blk();
    }
  }
  const jobsPgTop = await pgTop(statsUrl);
  const jobs = Object.fromEntries(
    Object.entries(latency).map(([conc, r]) => [
      conc,
      {
        fleet: {
          server: summary(r.fleet.map((x) => x.serverMs)),
          client: summary(r.fleet.map((x) => x.clientMs)),
          claim: summary(r.fleet.map((x) => x.claimMs)),
          ranElsewhere: r.fleet.filter((x) => x.ranOn !== x.submittedTo).length,
          ranOn: Object.fromEntries(names.map((n) => [n, r.fleet.filter((x) => x.ranOn === n).length])),
          jobsPerS: r.fleetBlockS.length ? round(mean(r.fleetBlockS.map((s) => cfg.jobs / s)), 2) : null,
        },
        single: {
          server: summary(r.single.map((x) => x.serverMs)),
          client: summary(r.single.map((x) => x.clientMs)),
          claim: summary(r.single.map((x) => x.claimMs)),
          jobsPerS: r.singleBlockS.length ? round(mean(r.singleBlockS.map((s) => cfg.jobs / s)), 2) : null,
        },
      },
    ]),
  );
  say(`fleet: jobs ${JSON.stringify(jobs)}`);

  // ---- 2: status polls on PostgreSQL ----
  const sample = Array.from(
    { length: Math.min(200, ids.length) },
    (_, i) => ids[Math.floor((i * ids.length) / Math.min(200, ids.length))]!,
  );
  const singleSample = Array.from(
    { length: Math.min(200, singleIds.length) },
    (_, i) => singleIds[Math.floor((i * singleIds.length) / Math.min(200, singleIds.length))]!,
  );
  const running = await submitTo(a.g, { ...jobSpec(['sleep', '3600']), placement: { node: 'a' } });
  await waitState(a.g, running.id, (j) => j.state === 'running', 60_000);
  const singleRunning = await submit(single.g.url, BENCH_TOKEN, jobSpec(['sleep', '3600']));
  await waitState(single.g, singleRunning.id, (j) => j.state === 'running', 60_000);
  const bare = await startBare('');
  live.servers.push(bare);
  const barePg = await startBarePg(url);
  live.servers.push(barePg);
  const auth = { authorization: `Bearer ${BENCH_TOKEN}` };
  const targets: PollTarget[] = [
    { name: 'finished', url: b.g.url, pid: b.g.pid, paths: sample.map((id) => `/v1/jobs/${id}`), headers: auth },
    { name: 'bare', url: bare.url, pid: bare.pid, paths: sample.map((id) => `/bare/jobs/${id}`), headers: {} },
    { name: 'running', url: b.g.url, pid: b.g.pid, paths: [`/v1/jobs/${running.id}`], headers: auth },
    { name: 'barePg', url: barePg.url, pid: barePg.pid, paths: sample.map((id) => `/bare-pg/jobs/${id}`), headers: {} },
    // The same polls of the single node on SQLite: what PostgreSQL changes, on the same machine and load.
    { name: 'singleFinished', url: single.g.url, pid: single.g.pid, paths: singleSample.map((id) => `/v1/jobs/${id}`), headers: auth },
    { name: 'singleRunning', url: single.g.url, pid: single.g.pid, paths: [`/v1/jobs/${singleRunning.id}`], headers: auth },
  ];
  for (const t of targets) {
    const r = await fetch(t.url + t.paths[0], { headers: t.headers });
    await r.text();
    if (r.status !== 200) throw new Error(`${t.name}: ${t.paths[0]} answered ${r.status}`);
  }
  say(`fleet: polls warm-up, ${cfg.polls.warmupSeconds} s per target`);
  for (const t of targets) await cannon(t, cfg.polls.warmupSeconds, cfg.polls.connections);
  await pgStatsReset(statsUrl);
  const polls: Record<string, { reqPerS: number[]; p99Ms: number[]; cpuUsPerReq: number[]; pgCpuUsPerReq: number[] }> = {};
  for (const t of targets) polls[t.name] = { reqPerS: [], p99Ms: [], cpuUsPerReq: [], pgCpuUsPerReq: [] };
  for (let r = 0; r < cfg.polls.rounds; r++) {
    for (const t of r % 2 === 0 ? targets : [...targets].reverse()) {
      say(`fleet: polls ${t.name}, ${cfg.polls.seconds} s, ${cfg.polls.connections} connections (round ${r + 1}/${cfg.polls.rounds})`);
      const cpu0 = procCpuSeconds(t.pid);
      const pg0 = pgCpuSeconds(db);
      const res = await cannon(t, cfg.polls.seconds, cfg.polls.connections);
      const o = polls[t.name]!;
      checkAnswers(t, res);
      const n = Math.max(1, res.requests.total);
      o.reqPerS.push(round(res.requests.average, 0));
      o.p99Ms.push(res.latency.p99);
      o.cpuUsPerReq.push(round(((procCpuSeconds(t.pid) - cpu0) * 1e6) / n, 1));
      o.pgCpuUsPerReq.push(round(((pgCpuSeconds(db) - pg0) * 1e6) / n, 1));
      await sleep(500);
    }
  }
  const pollsPgTop = await pgTop(statsUrl);
  await cancel(a.g.url, BENCH_TOKEN, running.id);
  await cancel(single.g.url, BENCH_TOKEN, singleRunning.id);
  await waitState(a.g, running.id, (j) => isTerminal(j.state), 60_000);
  await waitState(single.g, singleRunning.id, (j) => isTerminal(j.state), 60_000);
  for (const s of [bare, barePg]) {
    await s.stop();
    live.servers.splice(live.servers.indexOf(s), 1);
  }
  say(`fleet: polls ${JSON.stringify(polls)}`);

  // ---- 3: SSE from a node that does not run the job ----
  const { command, bytes, lines } = logCommand(cfg.logMb);
  const sseRuns: Record<'followB' | 'followA' | 'dockerFollow', Record<string, number>[]> = { followB: [], followA: [], dockerFollow: [] };
  const sseJob = async (via: Node, key: 'followB' | 'followA') => {
    say(`fleet: ${cfg.logMb} MB job on node a, SSE client on node ${via.name}`);
    const cpuA = procCpuSeconds(a.g.pid);
    const cpuB = procCpuSeconds(b.g.pid);
    const pg0 = pgCpuSeconds(db);
    const meter = new CpuMeter(null);
    const job = await submitTo(a.g, { ...jobSpec(command), placement: { node: 'a' } });
    const sse = followSse(via.g.url, BENCH_TOKEN, job.id);
    const r = await within(sse.done, 900_000, `log job ${job.id}`);
    if (r.end?.state !== 'succeeded') throw new Error(`log job ended ${r.end?.state}: ${r.end?.reason}`);
    if (r.end.node !== 'a') throw new Error(`log job ran on ${r.end.node}, not a`);
    if (r.lastSeq !== lines) throw new Error(`SSE client on ${via.name} got ${r.lastSeq} lines, expected ${lines}`);
    const s = (r.tEnd! - r.tFirstLog!) / 1000;
    const cpu = meter.stop();
    sseRuns[key].push({
      MBps: round((lines * LINE_BYTES) / MB / s, 2),
      linesPerS: round(lines / s, 0),
      wireMBps: round(r.wireBytes / MB / s, 2),
      sseMs: round(s * 1000, 0),
      jobRunMs: Date.parse(r.end.finishedAt!) - Date.parse(r.end.startedAt!),
      cpuNodeA: round(procCpuSeconds(a.g.pid) - cpuA, 2),
      cpuNodeB: round(procCpuSeconds(b.g.pid) - cpuB, 2),
      cpuPostgres: round(pgCpuSeconds(db) - pg0, 2),
      cpuEngines: cpu.engine,
      cpuBench: cpu.bench,
      machineBusy: cpu.machineBusy,
      machineCapacity: cpu.machineCapacity,
    });
  };
  const sseSteps = [
    () => sseJob(b, 'followB'),
    async () => {
      say(`fleet: docker logs --follow of the same container on node a's engine, ${cfg.logMb} MB`);
      const meter = new CpuMeter(null);
      const r = await runRaw(rawOptions('same', command, a.g.env), { followLogs: true }, a.engine.docker);
      if (r.payloadBytes !== bytes) throw new Error(`logs --follow got ${r.payloadBytes} bytes, expected ${bytes}`);
      const s = (r.runMs - (r.firstByteMs ?? 0)) / 1000;
      const cpu = meter.stop();
      sseRuns.dockerFollow.push({
        MBps: round(bytes / MB / s, 2),
        linesPerS: round(lines / s, 0),
        runMs: round(r.runMs, 0),
        cpuEngines: cpu.engine,
        cpuBench: cpu.bench,
        machineBusy: cpu.machineBusy,
        machineCapacity: cpu.machineCapacity,
      });
    },
    () => sseJob(a, 'followA'),
  ];
  await pgStatsReset(statsUrl);
  for (let r = 0; r < cfg.logRounds; r++) for (let s = 0; s < sseSteps.length; s++) await sseSteps[(r + s) % sseSteps.length]!();
  const ssePgTop = await pgTop(statsUrl);
  say(`fleet: sse ${JSON.stringify(sseRuns)}`);

  // ---- 4: a node gone for good ----
  const deaths: { failedAfterMs: number; reason: string | null }[] = [];
  for (let r = 0; r < cfg.deathRounds; r++) {
    const job = await submitTo(a.g, { ...jobSpec(['sleep', '3600']), placement: { node: 'c' } });
    await waitState(a.g, job.id, (j) => j.state === 'running', 60_000);
    // Somewhere in c's heartbeat period (the period is a third of the lease).
    await sleep(Math.random() * ((cfg.leaseSeconds * 1000) / 3));
    say(`fleet: SIGKILL to node c's Gantry and engine (lease ${cfg.leaseSeconds} s), round ${r + 1}/${cfg.deathRounds}`);
    const tKill = now();
    c.g.proc.kill('SIGKILL');
    await c.engine.kill();
    const { job: failed, t } = await waitState(a.g, job.id, (j) => isTerminal(j.state), 10 * cfg.leaseSeconds * 1000, 50);
    if (failed.state !== 'failed') throw new Error(`job on the dead node ended ${failed.state}: ${failed.reason}`);
    deaths.push({ failedAfterMs: round(t - tKill, 0), reason: failed.reason });
    say(`fleet: the job read failed ${round(t - tKill, 0)} ms after the kill: ${failed.reason}`);
    await c.g.stop();
    if (r + 1 < cfg.deathRounds) {
      // Bring c back (a new engine process on the same data root, a new Gantry epoch) for the next round.
      await c.engine.restart();
      c.g = await startGantry(c.dataDir, c.env, 'fleet c (again)');
    }
  }

  return {
    leaseSeconds: cfg.leaseSeconds,
    seeded: ids.length,
    jobs,
    polls,
    sse: { mb: cfg.logMb, ...sseRuns },
    deaths,
    pgTop: statsUrl ? { jobs: jobsPgTop, polls: pollsPgTop, sse: ssePgTop } : null,
  };
}

export type FleetResult = Awaited<ReturnType<typeof benchFleet>>;

/** The table's rows of this section (run.ts's `row`). */
export function fleetRows(
  r: FleetResult,
  row: (
    section: string,
    metric: string,
    gantry: number,
    baseline: number | string,
    target?: { op: '<=' | '>=' | '<'; value: number; on: 'ratio' | 'gantry' },
  ) => void,
): void {
  const S = '5 fleet';
  for (const [conc, j] of Object.entries(r.jobs)) {
    const how = conc === '1' ? 'one at a time' : `${conc} at a time`;
    row(S, `submit→terminal p50, ${how}, Gantry timestamps (ms), 3-node fleet vs 1 SQLite node`, j.fleet.server.p50, j.single.server.p50, {
      op: '<=',
      value: 1.25,
      on: 'ratio',
    });
    row(S, `submit→SSE end p50, ${how}, client (ms)`, j.fleet.client.p50, j.single.client.p50, { op: '<=', value: 1.25, on: 'ratio' });
    row(S, `ref: submit→SSE end p99, ${how}, client (ms)`, j.fleet.client.p99, j.single.client.p99);
    if (j.fleet.jobsPerS !== null && j.single.jobsPerS !== null)
      row(S, `ref: throughput, ${how} (jobs/s)`, j.fleet.jobsPerS, j.single.jobsPerS);
    row(S, `ref: fleet jobs, ${how}, that ran on another node than the one submitted to / all`, j.fleet.ranElsewhere, j.fleet.client.n);
  }
  for (const [conc, j] of Object.entries(r.jobs)) {
    const how = conc === '1' ? 'one at a time' : `${conc} at a time`;
    row(S, `submit→claimed p50, ${how} (ms; first status with a node)`, j.fleet.claim.p50, j.single.claim.p50);
    row(S, `submit→claimed p99, ${how} (ms)`, j.fleet.claim.p99, j.single.claim.p99);
  }
  const p = r.polls;
  row(
    S,
    'GET /v1/jobs/{id} on PostgreSQL, finished jobs (10k stored), req/s vs bare route',
    mean(p.finished!.reqPerS),
    mean(p.bare!.reqPerS),
    {
      op: '>=',
      value: 0.3,
      on: 'ratio',
    },
  );
  row(
    S,
    'GET /v1/jobs/{id} of a running job (not finished: its record is held only while the change feed vouches for it), req/s vs bare route',
    mean(p.running!.reqPerS),
    mean(p.bare!.reqPerS),
    {
      op: '>=',
      value: 0.3,
      on: 'ratio',
    },
  );
  row(S, 'ref: running job vs bare route + one PostgreSQL point read, req/s', mean(p.running!.reqPerS), mean(p.barePg!.reqPerS));
  row(S, 'ref: finished jobs, fleet node vs the single SQLite node, req/s', mean(p.finished!.reqPerS), mean(p.singleFinished!.reqPerS));
  row(S, 'ref: running job, fleet node vs the single SQLite node, req/s', mean(p.running!.reqPerS), mean(p.singleRunning!.reqPerS));
  row(S, 'ref: p99 ms (worst round), finished / running', Math.max(...p.finished!.p99Ms), Math.max(...p.running!.p99Ms));
  row(S, 'ref: Gantry CPU µs per poll, running vs finished', mean(p.running!.cpuUsPerReq), mean(p.finished!.cpuUsPerReq));
  row(S, 'ref: PostgreSQL CPU µs per poll, running job vs bare pg read', mean(p.running!.pgCpuUsPerReq), mean(p.barePg!.pgCpuUsPerReq));
  const avg = (xs: Record<string, number>[], k: string) => mean(xs.map((x) => x[k]!));
  if (r.sse.followB.length && r.sse.dockerFollow.length) {
    row(
      S,
      `SSE via node b of a ${r.sse.mb} MB job on node a vs docker logs --follow (MB/s)`,
      avg(r.sse.followB, 'MBps'),
      avg(r.sse.dockerFollow, 'MBps'),
      {
        op: '>=',
        value: 2,
        on: 'ratio',
      },
    );
    row(S, 'SSE via node b (lines/s)', avg(r.sse.followB, 'linesPerS'), avg(r.sse.dockerFollow, 'linesPerS'));
  }
  if (r.sse.followA.length && r.sse.dockerFollow.length) {
    row(S, 'ref: SSE via node a, which runs the job (MB/s)', avg(r.sse.followA, 'MBps'), avg(r.sse.dockerFollow, 'MBps'));
  }
  if (r.deaths.length) {
    const ms = r.deaths.map((d) => d.failedAfterMs);
    const lease = r.leaseSeconds * 1000;
    // Expected: the lease, less the time since the node's last renewal (up to a third of a lease), plus
    // up to a third of a lease until another node's next heartbeat looks: within (2/3, 4/3] of the lease.
    row(S, `node killed → its job reads failed, median of ${ms.length} (ms) vs the lease`, median(ms), lease, {
      op: '<=',
      value: 1.34,
      on: 'ratio',
    });
    row(S, 'node killed → failed, slowest (ms) vs the lease', Math.max(...ms), lease, { op: '<=', value: 1.34, on: 'ratio' });
    row(S, 'ref: node killed → failed, fastest (ms) vs the lease', Math.min(...ms), lease);
  }
}
