/**
 * The fleet at scale, simulated: N nodes (the real Gantry on an in-memory
 * container runtime, many per process: bench/lib/sim-node.ts) on one real
 * PostgreSQL, a steady stream of log-writing jobs submitted and polled
 * through the nodes' HTTP API, with a backlog of queued jobs and a history
 * of finished ones bulk-loaded into the table. Per cell (N, queued,
 * finished) it reports what the fleet costs PostgreSQL per job and at rest,
 * and what a client sees (docs/performance.md, "Fleet at scale: simulation").
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import pino from 'pino';
import { request } from 'undici';
import type { Job } from '../../src/model/job.js';
import { isTerminal } from '../../src/model/states.js';
import { createDatabase, startPostgres, type TestPostgres } from '../../test/helpers/postgres.js';
import { getJob, jobSpec, submit } from '../lib/client.js';
import { BENCH_TOKEN, procCpuSeconds, procKiB, ROOT } from '../lib/gantry.js';
import {
  type ConnectionSample,
  cloneJob,
  connect,
  connections,
  type DbCounters,
  diffCounters,
  NotificationCounter,
  OBSERVER,
  observerUrl,
  readCounters,
} from '../lib/pg-observer.js';
import { SIM_HOLD, SIM_JOB, startSimNode } from '../lib/sim-node.js';
import { mean, median, now, percentile, round, say, sleep, within } from '../lib/util.js';
import { pgCpuSeconds } from './fleet.js';

export interface FleetScaleConfig {
  nodes: number[];
  queued: number[];
  /** Finished jobs loaded for the history cells, run at each N of `finishedAt` with nothing queued. */
  finished: number;
  finishedAt: number[];
  /** Days the history's finish times are spread over, ending now. */
  historyDays: number;
  /** A cell whose nodes would hold more queued records than this in all (N × queued) is skipped: each node keeps the whole queue in memory. */
  maxQueueCopies: number;
  /** Jobs submitted per second, open loop, round robin over the nodes. */
  rate: number;
  seconds: number;
  warmupSeconds: number;
  idleSeconds: number;
  /** Each job writes this many stdout lines, one every lineMs, then exits 0. */
  lines: number;
  lineMs: number;
  /** A client polls each of its jobs this often until it ends (as Airflow's sensor would). */
  pollMs: number;
  /** Every node's /metrics is read this often (as Prometheus would); 0: never. */
  scrapeSeconds: number;
  nodesPerProcess: number;
}

interface Host {
  proc: ChildProcess;
  urls: Map<string, string>;
}

const LOG_DIR = () => path.join(os.tmpdir(), 'gantry-fleet-scale-logs');

/** Starts a process hosting the named nodes; resolves once every one listens. */
async function startHost(databaseUrl: string, root: string, names: string[], tag: string): Promise<Host> {
  fs.mkdirSync(LOG_DIR(), { recursive: true });
  const logFile = path.join(LOG_DIR(), `${tag}.log`);
  const err = fs.openSync(logFile, 'w');
  const spec = { databaseUrl, root, names, startConcurrency: 4 };
  const proc = spawn(
    process.execPath,
    ['--max-old-space-size=8192', '--import', 'tsx', path.join(ROOT, 'bench/lib/sim-node-host.ts'), JSON.stringify(spec)],
    { cwd: ROOT, stdio: ['ignore', 'pipe', err] },
  );
  fs.closeSync(err);
  const urls = new Map<string, string>();
  const ready = new Promise<void>((resolve, reject) => {
    let buf = '';
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (d: string) => {
      buf += d;
      for (let cut = buf.indexOf('\n'); cut !== -1; cut = buf.indexOf('\n')) {
        const msg = JSON.parse(buf.slice(0, cut)) as { name?: string; url?: string; ready?: boolean };
        buf = buf.slice(cut + 1);
        if (msg.name && msg.url) urls.set(msg.name, msg.url);
        if (msg.ready) resolve();
      }
    });
    proc.once('exit', (code) => reject(new Error(`node host ${tag} exited (${code}); see ${logFile}`)));
  });
  await within(ready, 600_000, `node host ${tag}`);
  return { proc, urls };
}

async function stopHost(h: Host): Promise<void> {
  if (h.proc.exitCode !== null || h.proc.signalCode !== null) return;
  const exited = new Promise((resolve) => h.proc.once('exit', resolve));
  h.proc.kill('SIGTERM');
  await within(exited, 60_000, 'node host exit').catch(() => h.proc.kill('SIGKILL'));
}

const hostCpu = (hosts: Host[]) => hosts.reduce((s, h) => s + (h.proc.pid ? procCpuSeconds(h.proc.pid) : 0), 0);
const driverCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
function machineBusy(): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]!) / 100;
}

interface Mark {
  t: number;
  counters: DbCounters;
  notifications: ReturnType<NotificationCounter['snapshot']>;
  pgCpu: number;
  hostCpu: number;
  driverCpu: number;
  machine: number;
}

/** A client's view of the fleet: submits, polls and scrapes over HTTP, as Airflow and Prometheus would. */
class Clients {
  readonly submitMs: number[] = [];
  readonly pollMs: number[] = [];
  readonly scrapeMs: number[] = [];
  readonly ended: Job[] = [];
  errors = 0;
  private scraping: NodeJS.Timeout[] = [];

  constructor(
    private readonly urls: string[],
    private readonly cfg: FleetScaleConfig,
  ) {}

  /** Submits `count` jobs at the configured rate (open loop) and polls each until it ends; resolves when all have. */
  async stream(count: number): Promise<void> {
    const t0 = now();
    const spec = jobSpec([SIM_JOB, String(this.cfg.lines), String(this.cfg.lineMs)]);
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const at = t0 + (i * 1000) / this.cfg.rate;
      const wait = at - now();
      if (wait > 0) await sleep(wait);
      jobs.push(this.one(this.urls[i % this.urls.length]!, spec));
    }
    await Promise.all(jobs);
  }

  private async one(url: string, spec: Record<string, unknown>): Promise<void> {
    let job: Job;
    const t = now();
    try {
      job = await submit(url, BENCH_TOKEN, spec);
    } catch {
      this.errors++;
      return;
    }
    this.submitMs.push(now() - t);
    const deadline = Date.now() + 300_000;
    while (!isTerminal(job.state) && Date.now() < deadline) {
      await sleep(this.cfg.pollMs);
      const pollUrl = this.urls[Math.floor(Math.random() * this.urls.length)]!;
      const tp = now();
      try {
        job = await getJob(pollUrl, BENCH_TOKEN, job.id);
        this.pollMs.push(now() - tp);
      } catch {
        this.errors++;
      }
    }
    if (isTerminal(job.state)) this.ended.push(job);
    else this.errors++;
  }

  /** Reads every node's /metrics every scrapeSeconds, spread over the interval. */
  startScrapes(): void {
    if (this.cfg.scrapeSeconds <= 0) return;
    const every = this.cfg.scrapeSeconds * 1000;
    this.urls.forEach((url, i) => {
      const first = setTimeout(
        () => {
          void this.scrape(url);
          this.scraping.push(setInterval(() => void this.scrape(url), every));
        },
        (i * every) / this.urls.length,
      );
      this.scraping.push(first);
    });
  }

  stopScrapes(): void {
    for (const t of this.scraping) clearTimeout(t);
    this.scraping = [];
  }

  private async scrape(url: string): Promise<void> {
    const t = now();
    try {
      await metricsText(url);
      this.scrapeMs.push(now() - t);
    } catch {
      this.errors++;
    }
  }
}

async function metricsText(url: string): Promise<string> {
  const r = await request(`${url}/metrics`, { headers: { authorization: `Bearer ${BENCH_TOKEN}` } });
  const text = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`metrics: ${r.statusCode}`);
  return text;
}

/** Scheduling passes every node has made so far (gantry_scheduler_pass_seconds_count), summed. */
async function passCount(urls: string[]): Promise<number> {
  const counts = await Promise.all(
    urls.map(async (u) => Number(/^gantry_scheduler_pass_seconds_count (\S+)$/m.exec(await metricsText(u))?.[1] ?? Number.NaN)),
  );
  return counts.reduce((a, b) => a + b, 0);
}

/** Samples the fleet's connections every second until stopped. */
function sampleConnections(obs: pg.Client): { stop(): Promise<ConnectionSample[]> } {
  const samples: ConnectionSample[] = [];
  let on = true;
  const loop = (async () => {
    while (on) {
      samples.push(await connections(obs));
      await sleep(1000);
    }
  })();
  return {
    async stop() {
      on = false;
      await loop;
      return samples;
    },
  };
}

/**
 * Seeds the cell's database through a node of its own ("sim-seed", drained,
 * then closed): a job that finished and a one-GPU job left queued, the
 * templates the bulk loads copy. Its name stays in the node registry until
 * the fleet declares it lost, a lease later; it holds no job.
 */
async function seedTemplates(url: string, root: string): Promise<{ finished: string; queued: string }> {
  const seed = await startSimNode({ name: 'sim-seed', databaseUrl: url, root, log: pino({ level: 'warn' }) });
  try {
    const done = await submit(seed.url, BENCH_TOKEN, jobSpec(['true']));
    for (let j = done; !isTerminal(j.state); j = await getJob(seed.url, BENCH_TOKEN, done.id)) await sleep(50);
    const r = await request(`${seed.url}/v1/nodes/sim-seed/drain`, { method: 'POST', headers: { authorization: `Bearer ${BENCH_TOKEN}` } });
    await r.body.text();
    if (r.statusCode >= 300) throw new Error(`drain: ${r.statusCode}`);
    const queued = await submit(seed.url, BENCH_TOKEN, { ...jobSpec([SIM_HOLD]), gpus: { count: 1 } });
    return { finished: done.id, queued: queued.id };
  } finally {
    await seed.app.close();
  }
}

export interface Cell {
  nodes: number;
  queued: number;
  finished: number;
}

function stats(xs: number[]) {
  return { n: xs.length, p50: round(median(xs), 1), p99: round(percentile(xs, 99), 1), max: round(Math.max(...xs), 1) };
}

async function mark(obs: pg.Client, db: TestPostgres, hosts: Host[], notes: NotificationCounter): Promise<Mark> {
  return {
    t: now(),
    counters: await readCounters(obs),
    notifications: notes.snapshot(),
    pgCpu: pgCpuSeconds(db),
    hostCpu: hostCpu(hosts),
    driverCpu: driverCpu(),
    machine: machineBusy(),
  };
}

function between(a: Mark, b: Mark) {
  const d = diffCounters(a.counters, b.counters);
  const kinds: Record<string, number> = {};
  for (const [k, v] of Object.entries(b.notifications.byKind)) kinds[k] = v - (a.notifications.byKind[k] ?? 0);
  return {
    seconds: (b.t - a.t) / 1000,
    db: d,
    notifications: b.notifications.total - a.notifications.total,
    notificationsByKind: kinds,
    pgCpu: b.pgCpu - a.pgCpu,
    hostCpu: b.hostCpu - a.hostCpu,
    driverCpu: b.driverCpu - a.driverCpu,
    machine: b.machine - a.machine,
  };
}

const connSummary = (s: ConnectionSample[]) => ({
  max: Math.max(...s.map((x) => x.total)),
  mean: round(mean(s.map((x) => x.total)), 1),
  listening: Math.max(...s.map((x) => x.listening)),
  maxActive: Math.max(...s.map((x) => x.active)),
});

async function runCell(db: TestPostgres, cell: Cell, index: number, cfg: FleetScaleConfig, tmp: string) {
  const name = `cell${index}`;
  const url = await createDatabase(db.url, name);
  const obs = await connect(observerUrl(url));
  await obs.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const root = path.join(tmp, name);
  const hosts: Host[] = [];
  try {
    let loadSeconds = 0;
    if (cell.queued > 0 || cell.finished > 0) {
      const templates = await seedTemplates(url, root);
      const t = now();
      // The first job of the backlog that each node takes holds its one GPU for the whole run: N more are loaded.
      if (cell.queued > 0) await cloneJob(obs, templates.queued, cell.queued + cell.nodes - 1, { finished: false, spreadDays: 0 });
      if (cell.finished > 0) await cloneJob(obs, templates.finished, cell.finished - 1, { finished: true, spreadDays: cfg.historyDays });
      await obs.query('VACUUM (ANALYZE) jobs');
      loadSeconds = round((now() - t) / 1000, 1);
      say(
        `fleet-scale ${name}: bulk-loaded ${cell.queued} queued + ${cell.finished} finished jobs (SQL generate_series) in ${loadSeconds} s`,
      );
    }
    const names = Array.from({ length: cell.nodes }, (_, i) => `sim-${String(i + 1).padStart(3, '0')}`);
    const tStart = now();
    for (let i = 0; i < names.length; i += cfg.nodesPerProcess) {
      hosts.push(await startHost(url, root, names.slice(i, i + cfg.nodesPerProcess), `${name}-host${hosts.length}`));
    }
    const startSeconds = round((now() - tStart) / 1000, 1);
    const urls = hosts.flatMap((h) => [...h.urls.values()]);
    say(`fleet-scale ${name}: ${cell.nodes} nodes in ${hosts.length} processes up in ${startSeconds} s`);
    const notes = await NotificationCounter.start(observerUrl(url));
    const clients = new Clients(urls, cfg);
    clients.startScrapes();
    try {
      // Warm-up: the same stream, not measured, all ended before the window opens.
      const warm = new Clients(urls, cfg);
      await within(warm.stream(Math.round(cfg.rate * cfg.warmupSeconds)), 600_000, 'warm-up');
      const passes0 = await passCount(urls);
      const conns = sampleConnections(obs);
      const load = Math.round(cfg.rate * cfg.seconds);
      const m0 = await mark(obs, db, hosts, notes);
      const load0 = os.loadavg()[0]!;
      await within(clients.stream(load), cfg.seconds * 1000 + 600_000, 'measured stream');
      const m1 = await mark(obs, db, hosts, notes);
      const loadConns = await conns.stop();
      const passes1 = await passCount(urls);
      // At rest: no submits or polls, only the scrapes (and the nodes' own heartbeats).
      await sleep(2000);
      const idleConns = sampleConnections(obs);
      const i0 = await mark(obs, db, hosts, notes);
      await sleep(cfg.idleSeconds * 1000);
      const i1 = await mark(obs, db, hosts, notes);
      const idleSamples = await idleConns.stop();
      const w = between(m0, m1);
      const idle = between(i0, i1);
      const jobs = clients.ended.length;
      const claim = clients.ended.filter((j) => j.startedAt).map((j) => Date.parse(j.startedAt!) - Date.parse(j.createdAt));
      const passes = passes1 - passes0;
      const rss = hosts.reduce((s, h) => s + (h.proc.pid ? procKiB(h.proc.pid, 'VmRSS') : 0), 0) / 1024;
      const result = {
        cell,
        processes: hosts.length,
        loadSeconds,
        startSeconds,
        loadavg: [round(load0, 2), round(os.loadavg()[0]!, 2)],
        jobs,
        succeeded: clients.ended.filter((j) => j.state === 'succeeded').length,
        clientErrors: clients.errors,
        windowSeconds: round(w.seconds, 1),
        perJob: {
          statements: round(w.db.statements / jobs, 1),
          statementMs: round(w.db.statementMs / jobs, 2),
          rowsReturned: round(w.db.statementRows / jobs, 1),
          notifications: round(w.notifications / jobs, 2),
          notificationsByKind: Object.fromEntries(Object.entries(w.notificationsByKind).map(([k, v]) => [k, round(v / jobs, 2)])),
          /** Each notification is delivered to every listening connection. */
          notificationDeliveries: round((w.notifications * connSummary(loadConns).listening) / jobs, 1),
          commits: round(w.db.db.xact_commit! / jobs, 1),
          jobsRowsRead: round((w.db.jobs.seq_tup_read! + w.db.jobs.idx_tup_fetch!) / jobs, 1),
          passes: round(passes / jobs, 2),
        },
        jobsRowsReadPerPass: round((w.db.jobs.seq_tup_read! + w.db.jobs.idx_tup_fetch!) / Math.max(passes, 1), 1),
        pgCpuSecondsPer1000Jobs: round((w.pgCpu / jobs) * 1000, 2),
        claimMs: stats(claim),
        submitMs: stats(clients.submitMs),
        pollMs: stats(clients.pollMs),
        scrapeMs: clients.scrapeMs.length ? stats(clients.scrapeMs) : null,
        connections: { load: connSummary(loadConns), idle: connSummary(idleSamples) },
        idle: {
          seconds: round(idle.seconds, 1),
          pgCorePercent: round((idle.pgCpu / idle.seconds) * 100, 2),
          nodeCorePercentEach: round((idle.hostCpu / idle.seconds / cell.nodes) * 100, 3),
          statementsPerSecond: round(idle.db.statements / idle.seconds, 1),
          notificationsPerSecond: round(idle.notifications / idle.seconds, 2),
          top: idle.db.top.slice(0, 6),
        },
        cpu: {
          pgSeconds: round(w.pgCpu, 2),
          nodesSeconds: round(w.hostCpu, 2),
          driverSeconds: round(w.driverCpu, 2),
          machineBusySeconds: round(w.machine, 2),
          /** The simulation's driver (submits, polls, scrapes, its stats queries): its share of the machine's busy CPU. */
          driverShare: round(w.driverCpu / w.machine, 3),
        },
        hostsRssMBPerNode: round(rss / cell.nodes, 1),
        top: w.db.top,
        db: w.db.db,
        jobsTable: w.db.jobs,
      };
      say(
        `fleet-scale ${name} N=${cell.nodes} queued=${cell.queued} finished=${cell.finished}: ${jobs} jobs, ` +
          `${result.perJob.statements} statements/job, ${result.perJob.notifications} notifications/job, ` +
          `claim p50/p99 ${result.claimMs.p50}/${result.claimMs.p99} ms, PG ${result.pgCpuSecondsPer1000Jobs} CPU s/1000 jobs, ` +
          `idle PG ${result.idle.pgCorePercent}% of a core, connections ${result.connections.load.max}, load ${result.loadavg.join('→')}`,
      );
      return result;
    } finally {
      clients.stopScrapes();
      await notes.stop();
    }
  } finally {
    await Promise.allSettled(hosts.map(stopHost));
    await obs.end().catch(() => undefined);
    await dropDatabase(db, name);
    fs.rmSync(root, { recursive: true, force: true });
  }
}

async function dropDatabase(db: TestPostgres, name: string): Promise<void> {
  const c = await connect(db.url);
  try {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await c.end();
  }
}

/** The cells to run: every N with every backlog, then the history cells; the ones that would not fit in memory are left out, and said. */
export function cells(cfg: FleetScaleConfig): { run: Cell[]; skipped: Cell[] } {
  const all: Cell[] = [];
  for (const n of cfg.nodes) for (const q of cfg.queued) all.push({ nodes: n, queued: q, finished: 0 });
  if (cfg.finished > 0) for (const n of cfg.finishedAt) all.push({ nodes: n, queued: 0, finished: cfg.finished });
  const fits = (c: Cell) => c.nodes * c.queued <= cfg.maxQueueCopies;
  return { run: all.filter(fits), skipped: all.filter((c) => !fits(c)) };
}

let live: TestPostgres | null = null;

/** Stops the section's PostgreSQL (also on SIGINT, from run.ts); the node hosts exit with the bench. */
export async function cleanupFleetScale(): Promise<void> {
  const db = live;
  live = null;
  await db?.destroy();
}

export async function benchFleetScale(tmp: string, cfg: FleetScaleConfig) {
  const { run, skipped } = cells(cfg);
  for (const c of skipped)
    say(`fleet-scale: skipping N=${c.nodes} with ${c.queued} queued (N × queued above FLEET_SCALE_MAX_QUEUE_COPIES)`);
  const t0 = now();
  const db = await startPostgres(null);
  live = db;
  try {
    const admin = await connect(db.url);
    await admin.query(`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`);
    await admin.query(`ALTER SYSTEM SET max_connections = ${Math.max(200, Math.max(...cfg.nodes) * 13 + 50)}`);
    await admin.query(`CREATE ROLE ${OBSERVER} SUPERUSER LOGIN`);
    await admin.end();
    await db.restart();
    const results = [];
    for (const [i, cell] of run.entries()) results.push(await runCell(db, cell, i, cfg, tmp));
    return { config: cfg, skipped, minutes: round((now() - t0) / 60_000, 1), cells: results };
  } finally {
    await cleanupFleetScale();
  }
}

export type FleetScaleResult = Awaited<ReturnType<typeof benchFleetScale>>;

/** The results as a markdown table, one row per cell. */
export function fleetScaleMarkdown(r: FleetScaleResult): string {
  const head = [
    'N',
    'queued',
    'finished',
    'jobs',
    'statements / job',
    'notifications / job (log, job)',
    'jobs rows read / pass',
    'passes / job',
    'PG CPU s / 1000 jobs',
    'claim p50 / p99 ms',
    'submit p50 / p99 ms',
    'poll p50 / p99 ms',
    'scrape p50 ms',
    'idle: PG % core',
    'idle: node % core each',
    'idle: statements / s',
    'connections load max / idle mean',
    'driver CPU share',
    'load avg',
  ];
  const lines = r.cells.map((c) =>
    [
      c.cell.nodes,
      c.cell.queued,
      c.cell.finished,
      c.jobs,
      c.perJob.statements,
      `${c.perJob.notifications} (${c.perJob.notificationsByKind.log ?? 0}, ${c.perJob.notificationsByKind.job ?? 0})`,
      c.jobsRowsReadPerPass,
      c.perJob.passes,
      c.pgCpuSecondsPer1000Jobs,
      `${c.claimMs.p50} / ${c.claimMs.p99}`,
      `${c.submitMs.p50} / ${c.submitMs.p99}`,
      `${c.pollMs.p50} / ${c.pollMs.p99}`,
      c.scrapeMs?.p50 ?? '',
      c.idle.pgCorePercent,
      c.idle.nodeCorePercentEach,
      c.idle.statementsPerSecond,
      `${c.connections.load.max} / ${c.connections.idle.mean}`,
      c.cpu.driverShare,
      c.loadavg.join('→'),
    ].join(' | '),
  );
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...lines.map((l) => `| ${l} |`)].join('\n');
}

type RowFn = (
  section: string,
  metric: string,
  gantry: number,
  baseline: number | string,
  target?: { op: '<=' | '>=' | '<'; value: number; on: 'ratio' | 'gantry' },
) => void;

/** The table's rows of this section (run.ts's `row`): the targets, where the cells they compare ran. */
export function fleetScaleRows(r: FleetScaleResult, row: RowFn): void {
  const S = '7 fleet-scale';
  const find = (n: number, q: number, f: number) => r.cells.find((c) => c.cell.nodes === n && c.cell.queued === q && c.cell.finished === f);
  for (const c of r.cells) {
    const at = `N=${c.cell.nodes}, ${c.cell.queued} queued, ${c.cell.finished} finished`;
    row(S, `${at}: statements / notifications per job`, c.perJob.statements, c.perJob.notifications);
    row(S, `${at}: claim p50 / p99 (ms)`, c.claimMs.p50, c.claimMs.p99);
  }
  const ns = [...new Set(r.cells.map((c) => c.cell.nodes))].sort((a, b) => a - b);
  const [lo, hi] = [ns[0], ns.at(-1)];
  const small = lo === undefined ? undefined : find(lo, 0, 0);
  const large = hi === undefined ? undefined : find(hi, 0, 0);
  if (small && large && small !== large) {
    row(S, `PostgreSQL CPU s per 1000 jobs, N=${hi} vs N=${lo}`, large.pgCpuSecondsPer1000Jobs, small.pgCpuSecondsPer1000Jobs, {
      op: '<=',
      value: 1.5,
      on: 'ratio',
    });
    row(S, `statements per job, N=${hi} vs N=${lo}`, large.perJob.statements, small.perJob.statements, {
      op: '<=',
      value: 1.5,
      on: 'ratio',
    });
  }
  const deep = hi === undefined ? undefined : find(hi, 10_000, 0);
  if (deep) row(S, `claim p99 (ms), N=${hi} with 10000 queued`, deep.claimMs.p99, '', { op: '<', value: 250, on: 'gantry' });
  for (const h of r.cells.filter((c) => c.cell.finished > 0)) {
    const empty = find(h.cell.nodes, 0, 0);
    if (empty) {
      row(S, `submit p50 (ms), N=${h.cell.nodes}, ${h.cell.finished} finished vs none`, h.submitMs.p50, empty.submitMs.p50, {
        op: '<=',
        value: 1.2,
        on: 'ratio',
      });
    }
  }
  if (large) row(S, `idle fleet of ${hi}: PostgreSQL % of one core`, large.idle.pgCorePercent, '', { op: '<', value: 10, on: 'gantry' });
}
