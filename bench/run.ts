/**
 * Gantry benchmarks: one command, `npm run bench`, builds Gantry,
 * starts it from the compiled JS and measures it against its baselines
 * ALTERNATELY in the same run (the machine is shared and noisy, so only the
 * ratios are meaningful). Prints a table on stdout and writes JSON.
 * Not part of the test run; it never asserts times.
 *
 * Sizes (env): BENCH_QUICK=1 for a ~2-minute smoke run, or any of
 * BENCH_SECTIONS=jobs,polls,logs,fanout,queue,share,fleet  BENCH_JOBS=50  BENCH_TPUT_JOBS=32
 * BENCH_TPUT_ROUNDS=2  BENCH_CONCURRENCY=1,4,16  BENCH_SEED_JOBS=10000
 * BENCH_POLL_WARMUP_SECONDS=20  BENCH_POLL_SECONDS=5  BENCH_POLL_ROUNDS=3
 * BENCH_POLL_FIXED_RATE=3000 (0 skips the fixed-load latency rounds)
 * BENCH_POLL_FRESH_ROUNDS=4 (polls on fresh processes; 0 skips them)
 * BENCH_POLL_SENSOR_ROUNDS=3 (/wait polls of jobs not ended, fresh processes; 0 skips them)  BENCH_LOG_MB=200
 * BENCH_LOG_DRIVERS=local,json-file  BENCH_LOG_ROUNDS=1  BENCH_LOG_WALL_ROUNDS=3 (samples each of the
 * job with no client and the plain attach, for the wall-time target)
 * BENCH_IDLE_CLIENTS=1000  BENCH_IDLE_JOBS=10  BENCH_FANOUT_CLIENTS=100
 * BENCH_FANOUT_MB=20  BENCH_OUT=bench/results/latest.json
 * BENCH_CPU_PROF=dir (run Gantry with --cpu-prof; see bench/profile-summary.ts),
 * BENCH_DIST=dir (run that compiled Gantry instead of building dist/),
 * BENCH_NODE_FLAGS='...' (extra node flags for Gantry), BENCH_LOG_STEPS=gantry,attach,follow,
 * BENCH_LOG_LEVEL=warn (Gantry's GANTRY_LOG_LEVEL; default: Gantry's own, info),
 * BENCH_FLEET_RELAY=off (the fleet section's nodes each listen to PostgreSQL: GANTRY_FLEET_RELAY).
 * The queue section (one fake GPU held, BENCH_QUEUE_DEPTH=10000 one-GPU jobs
 * queued behind it: submit latency shallow vs deep, freed-GPU hand-overs and
 * scheduling passes at depth; BENCH_QUEUE_CONCURRENCY=10 BENCH_QUEUE_SAMPLE=200
 * BENCH_QUEUE_HANDOVERS=5; BENCH_QUEUE_BEFORE_DIST=<a compiled tree> measures
 * another build first, at BENCH_QUEUE_BEFORE_DEPTH=2000).
 * The share section (no Docker, no Gantry process: the scheduling policy in
 * process over a simulated day; two teams with equal shares on 4 GPUs, see
 * bench/sections/share.ts): BENCH_SHARE_SEED=20261202.
 * The fleet section (three nodes on one PostgreSQL, each with its own Docker
 * engine, vs one SQLite node; runs last, ~4 min; BENCH_SECTIONS=fleet runs it alone;
 * needs root and PostgreSQL's server binaries, as the fleet tests do):
 * BENCH_FLEET_JOBS=30 (trivial jobs per side per block)  BENCH_FLEET_CONCURRENCY=1,4
 * BENCH_FLEET_ROUNDS=2 (blocks per side at concurrency > 1)  BENCH_FLEET_SEED_JOBS=10000
 * BENCH_FLEET_POLL_WARMUP_SECONDS=5  BENCH_FLEET_POLL_SECONDS=5  BENCH_FLEET_POLL_ROUNDS=3
 * BENCH_FLEET_LOG_MB=50  BENCH_FLEET_LOG_ROUNDS=2  BENCH_FLEET_LEASE_SECONDS=6 (GANTRY_NODE_LEASE_SECONDS)
 * BENCH_FLEET_DEATH_ROUNDS=3 (node kills)  BENCH_FLEET_PG_STATS=1 (pg_stat_statements: top statements per phase in the JSON).
 * The fleet-scale section (`npm run bench -- fleet-scale`, or BENCH_SECTIONS=fleet-scale; not part of a plain
 * `npm run bench`): N simulated nodes (the real Gantry on an in-memory container runtime, many per process)
 * on one PostgreSQL, a steady stream of log-writing jobs, a bulk-loaded backlog and history; per cell the
 * database's cost per job and at rest, and on an empty table the quota overshoot and duplicate preemptions
 * (bench/sections/fleet-scale.ts). The nodes take every GANTRY_* of the environment (GANTRY_FLEET_DECIDER too).
 * Defaults (a full run, about fourteen minutes; FLEET_SCALE_QUICK=1 or BENCH_QUICK=1: the quick values after the slash):
 * FLEET_SCALE_NODES=3,10,30,100/3,10  FLEET_SCALE_QUEUED=0,10000,100000/0,10000
 * FLEET_SCALE_FINISHED=1000000/100000 (history cells, nothing queued) at FLEET_SCALE_FINISHED_AT=3 (0 FINISHED: none)
 * FLEET_SCALE_HISTORY_DAYS=365  FLEET_SCALE_MAX_QUEUE_COPIES=1000000 (cells with N × queued above it are skipped)
 * FLEET_SCALE_RATE=5 (jobs/s)  FLEET_SCALE_SECONDS=10/8  FLEET_SCALE_IDLE_SECONDS=6/5
 * FLEET_SCALE_WARMUP_SECONDS=3/2  FLEET_SCALE_WARMUP_PER_NODE=3/1 (the warm-up runs whichever gives more jobs)
 * FLEET_SCALE_LINES=10  FLEET_SCALE_LINE_MS=200  FLEET_SCALE_POLL_MS=1000  FLEET_SCALE_SCRAPE_SECONDS=15
 * FLEET_SCALE_PREEMPT_ROUNDS=3/2 (0: no correctness checks)  FLEET_SCALE_NODES_PER_PROCESS=10
 * FLEET_SCALE_MD=bench/results/fleet-scale-latest.md (the table as markdown).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanupContainers, DestroyWatcher, docker, rawOptions, runRaw } from './lib/docker.js';
import { DIST, type GantryProc, ROOT, startGantry } from './lib/gantry.js';
import { envList, envNum, MB, mean, median, round, say } from './lib/util.js';
import { benchFanout } from './sections/fanout.js';
import { benchFleet, cleanupFleet, fleetRows } from './sections/fleet.js';
import { benchFleetScale, cleanupFleetScale, fleetScaleMarkdown, fleetScaleRows } from './sections/fleet-scale.js';
import { benchJobs } from './sections/jobs.js';
import { benchLogs, logCommand } from './sections/logs.js';
import { type BareServer, benchFreshPolls, benchPolls, seedJobs, startBare } from './sections/polls.js';
import { benchQueue, type QueueBenchResult } from './sections/queue.js';
import { benchShare, DAY } from './sections/share.js';

const quick = process.env.BENCH_QUICK === '1';
/** The fleet-scale section's quick run (about two minutes): fewer and shorter cells. */
const fleetScaleQuick = quick || process.env.FLEET_SCALE_QUICK === '1';
/** Sections named on the command line (`npm run bench -- fleet-scale`) take the place of BENCH_SECTIONS. */
const argSections = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const cfg = {
  sections: argSections.length ? argSections : envList('BENCH_SECTIONS', ['jobs', 'polls', 'logs', 'fanout', 'queue', 'share', 'fleet']),
  jobs: {
    jobs: envNum('BENCH_JOBS', quick ? 10 : 50),
    concurrency: envList('BENCH_CONCURRENCY', ['1', '4', '16']).map(Number),
    throughputJobs: envNum('BENCH_TPUT_JOBS', quick ? 16 : 32),
    throughputRounds: envNum('BENCH_TPUT_ROUNDS', quick ? 1 : 2),
  },
  seedJobs: envNum('BENCH_SEED_JOBS', 10_000),
  polls: {
    warmupSeconds: envNum('BENCH_POLL_WARMUP_SECONDS', quick ? 2 : 20),
    seconds: envNum('BENCH_POLL_SECONDS', quick ? 3 : 5),
    rounds: envNum('BENCH_POLL_ROUNDS', quick ? 1 : 3),
    connections: envNum('BENCH_POLL_CONNECTIONS', 100),
    fixedRate: envNum('BENCH_POLL_FIXED_RATE', 3000),
    freshRounds: envNum('BENCH_POLL_FRESH_ROUNDS', quick ? 1 : 4),
    sensorRounds: envNum('BENCH_POLL_SENSOR_ROUNDS', quick ? 1 : 3),
  },
  logs: {
    mb: envNum('BENCH_LOG_MB', quick ? 20 : 200),
    rounds: envNum('BENCH_LOG_ROUNDS', 1),
    wallRounds: envNum('BENCH_LOG_WALL_ROUNDS', quick ? 1 : 3),
    drivers: envList('BENCH_LOG_DRIVERS', ['local', 'json-file']),
  },
  fanout: {
    idleClients: envNum('BENCH_IDLE_CLIENTS', quick ? 200 : 1000),
    idleJobs: envNum('BENCH_IDLE_JOBS', 10),
    busyClients: envNum('BENCH_FANOUT_CLIENTS', quick ? 20 : 100),
    busyMb: envNum('BENCH_FANOUT_MB', quick ? 5 : 20),
  },
  fleet: {
    jobs: envNum('BENCH_FLEET_JOBS', quick ? 10 : 30),
    concurrency: envList('BENCH_FLEET_CONCURRENCY', ['1', '4']).map(Number),
    blockRounds: envNum('BENCH_FLEET_ROUNDS', quick ? 1 : 2),
    seedJobs: envNum('BENCH_FLEET_SEED_JOBS', 10_000),
    polls: {
      warmupSeconds: envNum('BENCH_FLEET_POLL_WARMUP_SECONDS', quick ? 2 : 5),
      seconds: envNum('BENCH_FLEET_POLL_SECONDS', quick ? 3 : 5),
      rounds: envNum('BENCH_FLEET_POLL_ROUNDS', quick ? 1 : 3),
      connections: envNum('BENCH_POLL_CONNECTIONS', 100),
    },
    logMb: envNum('BENCH_FLEET_LOG_MB', quick ? 10 : 50),
    logRounds: envNum('BENCH_FLEET_LOG_ROUNDS', quick ? 1 : 2),
    leaseSeconds: envNum('BENCH_FLEET_LEASE_SECONDS', 6),
    deathRounds: envNum('BENCH_FLEET_DEATH_ROUNDS', quick ? 1 : 3),
    pgStats: process.env.BENCH_FLEET_PG_STATS === '1',
  },
  queue: {
    depth: envNum('BENCH_QUEUE_DEPTH', quick ? 2000 : 10_000),
    concurrency: envNum('BENCH_QUEUE_CONCURRENCY', 10),
    sample: envNum('BENCH_QUEUE_SAMPLE', 200),
    handovers: envNum('BENCH_QUEUE_HANDOVERS', 5),
    /** Another compiled Gantry (a dist/ folder) to measure the same way first, e.g. the build before a change. */
    beforeDist: process.env.BENCH_QUEUE_BEFORE_DIST,
    beforeDepth: envNum('BENCH_QUEUE_BEFORE_DEPTH', 2000),
  },
  share: { seed: envNum('BENCH_SHARE_SEED', DAY.seed) },
  fleetScale: {
    nodes: envList('FLEET_SCALE_NODES', fleetScaleQuick ? ['3', '10'] : ['3', '10', '30', '100']).map(Number),
    queued: envList('FLEET_SCALE_QUEUED', fleetScaleQuick ? ['0', '10000'] : ['0', '10000', '100000']).map(Number),
    finished: envNum('FLEET_SCALE_FINISHED', fleetScaleQuick ? 100_000 : 1_000_000),
    finishedAt: envList('FLEET_SCALE_FINISHED_AT', ['3']).map(Number),
    historyDays: envNum('FLEET_SCALE_HISTORY_DAYS', 365),
    maxQueueCopies: envNum('FLEET_SCALE_MAX_QUEUE_COPIES', 1_000_000),
    rate: envNum('FLEET_SCALE_RATE', 5),
    seconds: envNum('FLEET_SCALE_SECONDS', fleetScaleQuick ? 8 : 10),
    warmupSeconds: envNum('FLEET_SCALE_WARMUP_SECONDS', fleetScaleQuick ? 2 : 3),
    warmupPerNode: envNum('FLEET_SCALE_WARMUP_PER_NODE', fleetScaleQuick ? 1 : 3),
    idleSeconds: envNum('FLEET_SCALE_IDLE_SECONDS', fleetScaleQuick ? 5 : 6),
    lines: envNum('FLEET_SCALE_LINES', 10),
    lineMs: envNum('FLEET_SCALE_LINE_MS', 200),
    pollMs: envNum('FLEET_SCALE_POLL_MS', 1000),
    scrapeSeconds: envNum('FLEET_SCALE_SCRAPE_SECONDS', 15),
    preemptRounds: envNum('FLEET_SCALE_PREEMPT_ROUNDS', fleetScaleQuick ? 2 : 3),
    nodesPerProcess: envNum('FLEET_SCALE_NODES_PER_PROCESS', 10),
  },
  fleetScaleMd: process.env.FLEET_SCALE_MD ?? path.join(ROOT, 'bench/results/fleet-scale-latest.md'),
  out: process.env.BENCH_OUT ?? path.join(ROOT, 'bench/results/latest.json'),
};
/** Whether a section needs the primary Gantry and its seeded SQLite store (the fleet sections start their own). */
const primaryNeeded = cfg.sections.some((s) => s !== 'fleet' && s !== 'fleet-scale' && s !== 'queue' && s !== 'share');
/** Whether a section needs Docker and a Gantry build (the share and fleet-scale sections run Gantry's code in process). */
const engineNeeded = cfg.sections.some((s) => s !== 'share' && s !== 'fleet-scale');

interface Row {
  section: string;
  metric: string;
  gantry: number | string;
  baseline: number | string;
  ratio: number | null;
  target: string;
  ok: boolean | null;
}

const rows: Row[] = [];
function row(
  section: string,
  metric: string,
  gantry: number,
  baseline: number | string,
  target?: { op: '<=' | '>=' | '<'; value: number; on: 'ratio' | 'gantry' },
): void {
  const ratio = typeof baseline === 'number' && baseline > 0 ? round(gantry / baseline, 2) : null;
  let ok: boolean | null = null;
  let t = '';
  if (target) {
    const x = target.on === 'ratio' ? ratio : gantry;
    t = `${target.on === 'ratio' ? 'ratio ' : ''}${target.op} ${target.value}`;
    if (x !== null) ok = target.op === '<=' ? x <= target.value : target.op === '<' ? x < target.value : x >= target.value;
  }
  rows.push({
    section,
    metric,
    gantry: round(gantry, 2),
    baseline: typeof baseline === 'number' ? round(baseline, 2) : baseline,
    ratio,
    target: t,
    ok,
  });
}

function printTable(): string {
  const head = ['section', 'metric', 'gantry', 'baseline', 'ratio', 'target', 'ok'];
  const cells = rows.map((r) => [
    r.section,
    r.metric,
    String(r.gantry),
    String(r.baseline),
    r.ratio === null ? '' : r.ratio.toFixed(2),
    r.target,
    r.ok === null ? '' : r.ok ? 'yes' : 'MISS',
  ]);
  const md = [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...cells.map((c) => `| ${c.join(' | ')} |`)].join(
    '\n',
  );
  return md;
}

async function main(): Promise<void> {
  const started = new Date();
  if (!engineNeeded) say('no section needs Docker or a Gantry build');
  else if (process.env.BENCH_DIST) say(`using the Gantry build in ${DIST}`);
  else {
    say('building Gantry (npm run build)');
    execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' });
  }
  const removed = engineNeeded ? await cleanupContainers() : 0;
  if (removed) say(`removed ${removed} leftover bench containers`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-'));
  const procs: (GantryProc | BareServer)[] = [];
  const watcher = new DestroyWatcher();
  const results: Record<string, unknown> = {};
  const onSignal = () => {
    say('interrupted: cleaning up');
    for (const p of procs) void p.stop();
    void Promise.allSettled([cleanupContainers(), cleanupFleet(), cleanupFleetScale()]).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    if (engineNeeded) await watcher.start();
    const primaryDir = path.join(tmp, 'primary');
    if (primaryNeeded) say(`seeding ${cfg.seedJobs} finished jobs into the store`);
    const ids = primaryNeeded ? await seedJobs(primaryDir, cfg.seedJobs) : [];
    // The same store for the polls on fresh processes, copied before Gantry opens it.
    const freshDir = path.join(tmp, 'fresh');
    const sensorDir = path.join(tmp, 'sensor');
    if (primaryNeeded) {
      fs.cpSync(primaryDir, freshDir, { recursive: true });
      fs.cpSync(primaryDir, sensorDir, { recursive: true });
    }
    const primaryEnv = {
      GANTRY_LOG_MAX_BYTES: String(Math.max(300, cfg.logs.mb + 50, cfg.fanout.busyMb + 50) * 1024 * 1024),
      // /metrics on its own port without a token: the polls section reads
      // Gantry's event-loop delay and GC counts from it between rounds.
      GANTRY_METRICS: 'open',
    };
    // Only the fleet section: no primary Gantry (it would sit idle beside the fleet).
    const g = primaryNeeded ? await startGantry(primaryDir, primaryEnv, 'primary') : (null as unknown as GantryProc);
    if (primaryNeeded) procs.push(g);
    const primaryDriver = primaryNeeded ? (g.env.GANTRY_LOG_DRIVER ?? 'local') : 'local'; // Gantry's default

    if (cfg.sections.includes('jobs')) {
      const r = await benchJobs(g, watcher, cfg.jobs);
      results.jobs = r;
      const lat = r.latency as Record<string, { p50: number; p99: number }>;
      row('1 jobs', 'submit→terminal p50, Gantry timestamps (ms)', lat.gantryServer!.p50, lat.raw!.p50, {
        op: '<=',
        value: 1.1,
        on: 'ratio',
      });
      row('1 jobs', 'submit→terminal p99, Gantry timestamps (ms)', lat.gantryServer!.p99, lat.raw!.p99, {
        op: '<=',
        value: 1.25,
        on: 'ratio',
      });
      row('1 jobs', 'submit→SSE end p50, client (ms)', lat.gantryClient!.p50, lat.raw!.p50, { op: '<=', value: 1.1, on: 'ratio' });
      row('1 jobs', 'submit→SSE end p99, client (ms)', lat.gantryClient!.p99, lat.raw!.p99, { op: '<=', value: 1.25, on: 'ratio' });
      row('1 jobs', 'submit→container removed p50 (ms)', lat.gantryRemoved!.p50, lat.raw!.p50);
      row('1 jobs', 'ref: raw + attach p50 / raw minimal p50 (ms)', lat.rawAttach!.p50, lat.rawMinimal!.p50);
      for (const [c, t] of Object.entries(r.throughput)) {
        row(
          '1 jobs',
          `throughput at concurrency ${c} (jobs/s)`,
          t.gantryJobsPerS,
          t.rawJobsPerS,
          c === '16' ? { op: '>=', value: 0.9, on: 'ratio' } : undefined,
        );
      }
    }

    if (cfg.sections.includes('polls')) {
      const bare = await startBare(path.join(primaryDir, 'gantry.db'));
      procs.push(bare);
      const r = await benchPolls(g, bare, ids, cfg.polls);
      results.polls = r;
      const sat = r.saturated;
      row('2 polls', 'GET /v1/jobs/{id} req/s (10k jobs stored)', sat.gantry!.reqPerS, sat.bare!.reqPerS, {
        op: '>=',
        value: 0.5,
        on: 'ratio',
      });
      row('2 polls', 'GET /v1/jobs/{id} p99 ms (worst round)', sat.gantry!.p99Ms, sat.bare!.p99Ms, { op: '<', value: 15, on: 'gantry' });
      row('2 polls', 'ref: vs bare route + sqlite point read, req/s', sat.gantry!.reqPerS, sat.bareSqlite!.reqPerS);
      row('2 polls', `ref: warm-up (first ${cfg.polls.warmupSeconds} s of polls), req/s`, r.warmup.gantry!.reqPerS, r.warmup.bare!.reqPerS);
      if (cfg.polls.fixedRate > 0) {
        const fr = r.fixedRate;
        row('2 polls', `ref: p50 ms at a fixed ${cfg.polls.fixedRate} req/s`, fr.gantry!.p50Ms, fr.bare!.p50Ms);
        row(
          '2 polls',
          `ref: p99 ms at a fixed ${cfg.polls.fixedRate} req/s (median round)`,
          median(fr.gantry!.p99sMs),
          median(fr.bare!.p99sMs),
        );
        row('2 polls', `ref: p99 ms at a fixed ${cfg.polls.fixedRate} req/s (worst round)`, fr.gantry!.p99Ms, fr.bare!.p99Ms);
      }
      await bare.stop();
      if (cfg.polls.freshRounds > 0) {
        // The bare route is a process that has served nothing else; so is
        // each Gantry here (the rows above are the long-running Gantry that
        // ran the jobs section first).
        say(`polls: ${cfg.polls.freshRounds} rounds on fresh processes`);
        const fresh = (
          await benchFreshPolls({
            dists: [DIST],
            dataDirs: [freshDir],
            ids,
            rounds: cfg.polls.freshRounds,
            warmupSeconds: 5,
            seconds: cfg.polls.seconds,
            connections: cfg.polls.connections,
            cpuMatchedBare: true,
          })
        ).rounds;
        results.pollsFresh = fresh;
        row(
          '2 polls',
          `GET /v1/jobs/{id} req/s, fresh processes (${cfg.polls.freshRounds} rounds)`,
          mean(fresh.A!.reqPerS),
          mean(fresh.bare!.reqPerS),
          { op: '>=', value: 0.5, on: 'ratio' },
        );
        row('2 polls', 'ref: fresh processes, CPU µs per request', mean(fresh.A!.cpuUsPerReq), mean(fresh.bare!.cpuUsPerReq));
        row('2 polls', 'ref: fresh processes, p99 ms (median round)', median(fresh.A!.p99Ms), median(fresh.bare!.p99Ms));
        // The bare route with a busy loop making its CPU per request Gantry's:
        // if its p99 matches Gantry's, the p99 is the poll's CPU cost on one
        // thread (100 connections in flight), not stalls of Gantry's own.
        row(
          '2 polls',
          'ref: bare route CPU-matched to Gantry (busy loop): CPU µs per request',
          mean(fresh.bareMatched!.cpuUsPerReq),
          mean(fresh.A!.cpuUsPerReq),
        );
        row(
          '2 polls',
          'ref: bare route CPU-matched to Gantry: p99 ms (median round) vs Gantry',
          median(fresh.bareMatched!.p99Ms),
          median(fresh.A!.p99Ms),
        );
        row('2 polls', 'ref: bare route CPU-matched to Gantry: req/s vs Gantry', mean(fresh.bareMatched!.reqPerS), mean(fresh.A!.reqPerS));
      }
      if (cfg.polls.sensorRounds > 0) {
        // The stock HttpSensor's poke: what Airflow really sends while a job runs.
        say(`polls: ${cfg.polls.sensorRounds} rounds of sensor polls (/wait) on fresh processes`);
        const sensor = (
          await benchFreshPolls({
            dists: [DIST],
            dataDirs: [sensorDir],
            ids,
            rounds: cfg.polls.sensorRounds,
            warmupSeconds: 5,
            seconds: cfg.polls.seconds,
            connections: cfg.polls.connections,
            endpoint: 'sensor',
          })
        ).rounds;
        results.pollsSensor = sensor;
        row(
          '2 polls',
          `GET /v1/jobs/{id}/wait, 200 jobs not ended (404), req/s, fresh processes (${cfg.polls.sensorRounds} rounds)`,
          mean(sensor.A!.reqPerS),
          mean(sensor.bare!.reqPerS),
          { op: '>=', value: 0.5, on: 'ratio' },
        );
        row('2 polls', 'ref: /wait, CPU µs per request', mean(sensor.A!.cpuUsPerReq), mean(sensor.bare!.cpuUsPerReq));
        row('2 polls', 'ref: /wait, p99 ms (median round)', median(sensor.A!.p99Ms), median(sensor.bare!.p99Ms));
      }
      procs.splice(procs.indexOf(bare), 1);
    }

    if (cfg.sections.includes('logs')) {
      const { command, bytes } = logCommand(cfg.logs.mb);
      say('logs: producer alone into /dev/null');
      const devnull = await runRaw(rawOptions('same', ['sh', '-c', `${command[2]} > /dev/null`], g.env));
      const producerMBps = bytes / MB / (devnull.runMs / 1000);
      results.producerAloneMBps = round(producerMBps, 1);
      const perDriver = [];
      for (const driver of cfg.logs.drivers) {
        let gd = g;
        if (driver !== primaryDriver) {
          gd = await startGantry(path.join(tmp, `driver-${driver}`), { ...primaryEnv, GANTRY_LOG_DRIVER: driver }, driver);
          procs.push(gd);
        }
        const r = await benchLogs(gd, driver, cfg.logs);
        perDriver.push(r);
        const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
        const attachMs = median(r.attach.map((x) => x.runMs));
        const gantryRuns = [...r.alone, ...r.gantry];
        // BENCH_LOG_STEPS may leave steps out: only rows whose steps ran.
        if (r.alone.length && r.attach.length) {
          row(
            `3 logs ${driver}`,
            `${cfg.logs.mb} MB job wall, Gantry (no client) vs plain attach (ms, median of ${r.alone.length} / ${r.attach.length})`,
            median(r.alone.map((x) => x.runMs)),
            attachMs,
            { op: '<=', value: 1.1, on: 'ratio' },
          );
        }
        if (r.gantry.length && r.attach.length) {
          row(
            `3 logs ${driver}`,
            `${cfg.logs.mb} MB job wall, Gantry + 1 SSE client vs plain attach (ms)`,
            avg(r.gantry.map((x) => x.runMs)),
            attachMs,
          );
        }
        if (r.gantry.length && r.follow.length) {
          row(
            `3 logs ${driver}`,
            'SSE delivery vs docker logs --follow (MB/s)',
            avg(r.gantry.map((x) => x.sseMBps)),
            avg(r.follow.map((x) => x.MBps)),
            { op: '>=', value: 2, on: 'ratio' },
          );
          row(
            `3 logs ${driver}`,
            'SSE delivery (lines/s)',
            avg(r.gantry.map((x) => x.sseLinesPerS)),
            avg(r.follow.map((x) => (x.MBps * MB) / 37)),
          );
        }
        if (gantryRuns.length) {
          row(
            `3 logs ${driver}`,
            'Gantry peak RSS (MB), vs idle',
            Math.max(...gantryRuns.map((x) => x.peakRssMB)),
            Math.min(...gantryRuns.map((x) => x.rssBeforeMB)),
            { op: '<', value: 200, on: 'gantry' },
          );
        }
        if (r.attach.length)
          row(`3 logs ${driver}`, 'ref: attach MB/s vs producer alone MB/s', avg(r.attach.map((x) => x.MBps)), producerMBps);
        if (gd !== g) {
          await gd.stop();
          procs.splice(procs.indexOf(gd), 1);
        }
      }
      results.logs = perDriver;
    }

    if (cfg.sections.includes('fanout')) {
      const r = await benchFanout(g, cfg.fanout);
      results.fanout = r;
      row('4 fan-out', `${r.idle.clients} idle SSE clients: Gantry RSS (MB)`, r.idle.rssMB!, r.idle.rssBeforeMB!, {
        op: '<',
        value: 300,
        on: 'gantry',
      });
      row('4 fan-out', `${r.busy.clients} clients on one ${r.busy.mb} MB job: MB/s each (median)`, r.busy.perClientMBpsMedian, '');
      row('4 fan-out', `${r.busy.clients} clients: MB/s each (slowest) / Gantry peak RSS MB`, r.busy.perClientMBpsMin, r.busy.peakRssMB);
    }

    if (cfg.sections.includes('queue')) {
      const q = cfg.queue;
      const runs: QueueBenchResult[] = [];
      if (q.beforeDist) {
        const dir = path.join(tmp, 'queue-before');
        runs.push(await benchQueue(dir, { ...q, depth: q.beforeDepth }, 'queue-before', q.beforeDist));
      }
      runs.push(await benchQueue(path.join(tmp, 'queue'), q, 'queue'));
      results.queue = runs;
      for (const r of runs) {
        const who = r.label === 'queue' ? '' : ` [${q.beforeDist}]`;
        row('5 queue', `submit p50 (ms) with ${r.depth} queued vs the first ${q.sample}${who}`, r.submitDeepMs.p50, r.submitShallowMs.p50, {
          op: '<=',
          value: 2,
          on: 'ratio',
        });
        row('5 queue', `submit p99 (ms) with ${r.depth} queued vs the first ${q.sample}${who}`, r.submitDeepMs.p99, r.submitShallowMs.p99);
        row('5 queue', `${r.depth} submits (s, ${q.concurrency} at a time)${who}`, r.submitAllSeconds, '');
        row('5 queue', `freed GPU: end event → next job's first step (ms, median)${who}`, median(r.handoverMs), '');
        if (r.passes) {
          row('5 queue', `scheduling pass at depth ${r.depth}: mean (ms) / p99 at most (ms)`, r.passes.meanMs, r.passes.p99AtMostMs, {
            op: '<=',
            value: 10,
            on: 'gantry',
          });
        }
      }
    }

    if (cfg.sections.includes('share')) {
      const r = benchShare({ ...DAY, seed: cfg.share.seed });
      results.share = r;
      const h = (p: { fromH: number; toH: number }) => `h ${p.fromH}-${p.toH}`;
      for (const p of r.phases) {
        const used = `${p.gpuHours.a} / ${p.gpuHours.b} GPU-h`;
        if (p.bothBusy) {
          // Within 10% of an equal share: each team's part of the GPU-hours used is 0.45 or more (so both are 0.55 or less).
          row('6 share', `${p.name} (${h(p)}): team a's part of the GPU-hours used (a / b)`, p.share.a, used, {
            op: '>=',
            value: 0.45,
            on: 'gantry',
          });
          row('6 share', `${p.name} (${h(p)}): team b's part of the GPU-hours used`, p.share.b, '', {
            op: '>=',
            value: 0.45,
            on: 'gantry',
          });
        } else {
          row('6 share', `${p.name} (${h(p)}): team a's GPU-hours over the host's less b's (a / b)`, p.leftUseA, used, {
            op: '>=',
            value: 0.9,
            on: 'gantry',
          });
          row('6 share', `${p.name} (${h(p)}): ref: team a's part of the host's GPU-hours`, p.hostShareA, '');
        }
        row('6 share', `${p.name} (${h(p)}): ref: utilisation of the 4 GPUs`, p.utilisation, '');
        row(
          '6 share',
          `${p.name} (${h(p)}): ref: GPU-hours idle while jobs waited: all refused by quota / behind the GPU reservation`,
          p.idleGpuHours.quota,
          p.idleGpuHours.reserved,
        );
      }
      row('6 share', 'max wait (min): a 2-GPU job vs a 1-GPU job', r.maxWaitMinutes.gpus2, r.maxWaitMinutes.gpus1, {
        op: '<=',
        value: 1.5,
        on: 'ratio',
      });
      row('6 share', 'invariants broken / jobs never ended', r.violations.length, r.unfinished, { op: '<', value: 1, on: 'gantry' });
      row('6 share', 'ref: preemptions (jobs submitted)', r.preemptions, r.jobs);
      row('6 share', 'ref: the queue drained at (h, after the last submit)', r.drainedAtH, '');
      row('6 share', 'ref: simulation wall (ms) (scheduling passes)', r.wallMs, r.passes);
      row('6 share', 'ref: scheduling passes per second of wall', r.passes / (r.wallMs / 1000), '');
      for (const v of r.violations) say(`share: ${v}`);
    }

    if (cfg.sections.includes('fleet')) {
      // The fleet runs last, on its own processes: the primary Gantry is done by then.
      if (primaryNeeded) {
        await g.stop();
        procs.splice(procs.indexOf(g), 1);
      }
      const r = await benchFleet(tmp, cfg.fleet);
      results.fleet = r;
      fleetRows(r, row);
    }

    if (cfg.sections.includes('fleet-scale')) {
      const r = await benchFleetScale(tmp, cfg.fleetScale);
      results.fleetScale = r;
      fleetScaleRows(r, row);
      const md = fleetScaleMarkdown(r);
      fs.mkdirSync(path.dirname(cfg.fleetScaleMd), { recursive: true });
      fs.writeFileSync(cfg.fleetScaleMd, `${md}\n`);
      process.stdout.write(`\nFleet at scale (${r.minutes} min):\n\n${md}\n`);
      say(`wrote ${path.relative(ROOT, cfg.fleetScaleMd)}`);
    }

    const table = printTable();
    process.stdout.write(
      `\nGantry bench, ${started.toISOString()} (${os.cpus().length} cores, load ${os
        .loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')})\n\n${table}\n\n`,
    );
    const info = engineNeeded ? await docker.version() : null;
    const out = {
      started: started.toISOString(),
      finished: new Date().toISOString(),
      machine: {
        cores: os.cpus().length,
        cpu: os.cpus()[0]?.model,
        memMB: Math.round(os.totalmem() / MB),
        loadavgAtEnd: os.loadavg(),
        node: process.version,
        docker: info?.Version ?? null,
      },
      config: cfg,
      table: rows,
      results,
    };
    fs.mkdirSync(path.dirname(cfg.out), { recursive: true });
    fs.writeFileSync(cfg.out, `${JSON.stringify(out, null, 2)}\n`);
    say(`wrote ${path.relative(ROOT, cfg.out)}`);
  } finally {
    watcher.stop();
    for (const p of procs) await p.stop();
    if (engineNeeded) await cleanupContainers();
    if (process.env.BENCH_KEEP !== '1') fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch(async (err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  await cleanupContainers().catch(() => undefined);
  process.exit(1);
});
