/**
 * The fleet at scale, simulated: N nodes (the real Gantry on an in-memory
 * container runtime, many per process: bench/lib/sim-node.ts) on one real
 * PostgreSQL, a steady stream of log-writing jobs submitted and polled
 * through the nodes' HTTP API, with a backlog of queued jobs and a history
 * of finished ones bulk-loaded into the table. Per cell (N, queued,
 * finished) it reports what the fleet costs PostgreSQL per job and at rest,
 * what a client sees, and, on an empty table, how well the fleet's
 * decisions hold a team's GPU quota and how many preemptions a waiting job
 * causes (docs/performance.md, "Fleet at scale: simulation").
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import pino from 'pino';
import { request } from 'undici';
import { isTerminal } from '../../src/model/states.js';
import { createDatabase, startPostgres, type TestPostgres } from '../../test/helpers/postgres.js';
import { getJob, jobSpec, submit } from '../lib/client.js';
import { BENCH_TOKEN } from '../lib/gantry.js';
import { cloneJob, connect, connections, NotificationCounter, OBSERVER, observerUrl } from '../lib/pg-observer.js';
import { type ClientPlan, Clients, passCount } from '../lib/sim-clients.js';
import { duplicatePreemptions, quotaOvershoot } from '../lib/sim-correctness.js';
import { type Host, hostsRssMB, startHost, stopHost } from '../lib/sim-hosts.js';
import { between, connSummary, mark, sampleConnections, stats } from '../lib/sim-measure.js';
import { SIM_HOLD, type SimNodeFiles, startSimNode, writeSimNodeFiles } from '../lib/sim-node.js';
import { now, round, say, sleep, within } from '../lib/util.js';

/** Waits (a minute at most) until `count` connections listen for the fleet; the seconds it took. */
async function settledListeners(obs: pg.Client, count: number): Promise<number> {
  const t = now();
  while ((await connections(obs)).listening > count && now() - t < 60_000) await sleep(250);
  return round((now() - t) / 1000, 1);
}

export interface FleetScaleConfig extends ClientPlan {
  nodes: number[];
  queued: number[];
  /** Finished jobs loaded for the history cells, run at each N of `finishedAt` with nothing queued. */
  finished: number;
  finishedAt: number[];
  /** Days the history's finish times are spread over, ending now. */
  historyDays: number;
  /** A cell whose nodes would hold more queued records than this in all (N × queued) is skipped: each node keeps the whole queue in memory. */
  maxQueueCopies: number;
  seconds: number;
  warmupSeconds: number;
  /**
   * Warm-up jobs per node, at least: a fleet in production has run jobs on
   * every node before, so every node's pooled connections have prepared
   * their statements and loaded their caches. The warm-up itself is
   * measured too, as the cold fleet's cost.
   */
  warmupPerNode: number;
  idleSeconds: number;
  /** Waiting jobs, one at a time, in the duplicate-preemption check; 0: no correctness checks. */
  preemptRounds: number;
  /**
   * Simulated nodes sharing one process. Each keeps the whole queue in its
   * heap, so a process of many nodes with a deep queue collects garbage for
   * all of them at once, a pause no node of a real fleet has.
   */
  nodesPerProcess: number;
}

/** The capped team's GPUs in a fleet of `nodes` one-GPU nodes: a third of them, so that most of the fleet is free to overshoot onto. */
const teamGpus = (nodes: number) => Math.max(1, Math.floor(nodes / 3));

/**
 * Seeds the cell's database through a node of its own ("sim-seed", drained,
 * then closed): a job that finished and a one-GPU job left queued, the
 * templates the bulk loads copy. Its name stays in the node registry until
 * the fleet declares it lost, a lease later; it holds no job.
 */
async function seedTemplates(url: string, root: string, files: SimNodeFiles): Promise<{ finished: string; queued: string }> {
  const seed = await startSimNode({ name: 'sim-seed', databaseUrl: url, root, files, log: pino({ level: 'warn' }) });
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

/**
 * The fleet's decisions on an empty table, after the measured windows: a
 * burst of the capped team's GPU jobs (twice the fleet's GPUs), then waiting
 * high-priority jobs on a fleet whose every GPU runs a preemptible job.
 */
async function correctness(obs: Parameters<typeof quotaOvershoot>[0], urls: string[], cell: Cell, cfg: FleetScaleConfig) {
  if (cfg.preemptRounds <= 0 || cell.queued > 0 || cell.finished > 0) return null;
  const quota = await quotaOvershoot(obs, urls, teamGpus(cell.nodes), 2 * cell.nodes);
  const preemption = await duplicatePreemptions(obs, urls, cfg.preemptRounds);
  say(
    `fleet-scale N=${cell.nodes}: team quota ${quota.teamGpus} GPUs, held at most ${quota.maxHeld} (overshoot ${quota.overshoot}); ` +
      `${preemption.preemptions} preemptions for ${preemption.rounds} waiting jobs (${preemption.duplicates} duplicates)` +
      (preemption.stuck.length ? `; not running again: ${JSON.stringify(preemption.stuck)}` : ''),
  );
  return { quota, preemption };
}

async function runCell(db: TestPostgres, cell: Cell, index: number, cfg: FleetScaleConfig, tmp: string) {
  const name = `cell${index}`;
  const url = await createDatabase(db.url, name);
  const obs = await connect(observerUrl(url));
  await obs.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const root = path.join(tmp, name);
  const hosts: Host[] = [];
  const files = writeSimNodeFiles(root, teamGpus(cell.nodes));
  try {
    let loadSeconds = 0;
    if (cell.queued > 0 || cell.finished > 0) {
      const templates = await seedTemplates(url, root, files);
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
      hosts.push(await startHost(url, root, names.slice(i, i + cfg.nodesPerProcess), files, `${name}-host${hosts.length}`));
    }
    const startSeconds = round((now() - tStart) / 1000, 1);
    const urls = hosts.flatMap((h) => [...h.urls.values()]);
    say(`fleet-scale ${name}: ${cell.nodes} nodes in ${hosts.length} processes up in ${startSeconds} s`);
    // Where the decider relays the change feed (the default), the others follow it within a beat or two.
    const relayedSeconds = await settledListeners(obs, process.env.GANTRY_FLEET_RELAY === 'off' ? cell.nodes : 1);
    say(`fleet-scale ${name}: listening connections settled in ${relayedSeconds} s`);
    const notes = await NotificationCounter.start(observerUrl(url));
    const clients = new Clients(urls, cfg);
    clients.startScrapes();
    try {
      // Warm-up: the same stream, all ended before the window opens, measured as the cold fleet's cost.
      const warm = new Clients(urls, cfg);
      const c0 = await mark(obs, db, hosts, notes);
      await within(warm.stream(Math.max(Math.round(cfg.rate * cfg.warmupSeconds), cfg.warmupPerNode * cell.nodes)), 900_000, 'warm-up');
      const cold = between(c0, await mark(obs, db, hosts, notes));
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
      const rss = hostsRssMB(hosts);
      const decisions = await correctness(obs, urls, cell, cfg);
      const w = between(m0, m1);
      const idle = between(i0, i1);
      const jobs = clients.ended.length;
      const claim = clients.ended.filter((j) => j.startedAt).map((j) => Date.parse(j.startedAt!) - Date.parse(j.createdAt));
      const passes = passes1 - passes0;
      const result = {
        cell,
        processes: hosts.length,
        loadSeconds,
        startSeconds,
        relayedSeconds,
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
          /** Each notification is delivered to every listening connection: every node's, or the relaying decider's alone. */
          notificationDeliveries: round((w.notifications * connSummary(loadConns).listeningMean) / jobs, 1),
          commits: round(w.db.db.xact_commit! / jobs, 1),
          jobsRowsRead: round((w.db.jobs.seq_tup_read! + w.db.jobs.idx_tup_fetch!) / jobs, 1),
          passes: round(passes / jobs, 2),
        },
        jobsRowsReadPerPass: round((w.db.jobs.seq_tup_read! + w.db.jobs.idx_tup_fetch!) / Math.max(passes, 1), 1),
        pgCpuSecondsPer1000Jobs: round((w.pgCpu / jobs) * 1000, 2),
        /**
         * Less what the same fleet costs at rest over the window (its beats and
         * scrapes, measured just after): what the jobs themselves cost. The
         * rest grows with N whatever the jobs, and is measured on its own (idle).
         */
        netOfRest: {
          pgCpuSecondsPer1000Jobs: round(((w.pgCpu - (idle.pgCpu / idle.seconds) * w.seconds) / jobs) * 1000, 2),
          statementsPerJob: round((w.db.statements - (idle.db.statements / idle.seconds) * w.seconds) / jobs, 1),
        },
        /** The warm-up: the first jobs after the fleet started, each node's connections and caches still cold. */
        cold: {
          jobs: warm.ended.length,
          pgCpuSecondsPer1000Jobs: round((cold.pgCpu / Math.max(warm.ended.length, 1)) * 1000, 2),
          statementsPerJob: round(cold.db.statements / Math.max(warm.ended.length, 1), 1),
        },
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
        decisions,
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

export { fleetScaleMarkdown, fleetScaleRows } from './fleet-scale-report.js';
