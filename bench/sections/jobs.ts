import type { Job } from '../../src/model/job.js';
import { followSse, jobSpec, submit } from '../lib/client.js';
import { CpuMeter } from '../lib/cpu.js';
import { type DestroyWatcher, type RawKind, rawOptions, runRaw } from '../lib/docker.js';
import { BENCH_TOKEN, type GantryProc, procCpuSeconds } from '../lib/gantry.js';
import { mean, median, now, percentile, pool, round, say, within } from '../lib/util.js';

const TRIVIAL = ['true'];

export interface GantryJobTiming {
  /** Gantry's own timestamps: createdAt → finishedAt (ms resolution). */
  serverMs: number;
  /** Client: POST sent → SSE `end` event received. */
  clientMs: number;
  /** Client: POST sent → container destroyed (Docker event). */
  removedMs: number;
  job: Job;
}

async function gantryJob(
  g: GantryProc,
  watcher: DestroyWatcher,
  awaitRemoval: boolean,
): Promise<GantryJobTiming & { removed: Promise<number> }> {
  const t0 = now();
  const job = await submit(g.url, BENCH_TOKEN, jobSpec(TRIVIAL));
  const removed = watcher.destroyed(job.id);
  const sse = followSse(g.url, BENCH_TOKEN, job.id);
  const r = await within(sse.done, 120_000, `job ${job.id}`);
  if (r.end?.state !== 'succeeded') throw new Error(`job ${job.id} ended ${r.end?.state}: ${r.end?.reason}`);
  const serverMs = Date.parse(r.end.finishedAt!) - Date.parse(r.end.createdAt);
  const removedMs = awaitRemoval ? (await within(removed, 60_000, `removal of ${job.id}`)) - t0 : Number.NaN;
  return { serverMs, clientMs: r.tEnd! - t0, removedMs, job: r.end, removed };
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

export interface JobsConfig {
  jobs: number;
  concurrency: number[];
  throughputJobs: number;
  throughputRounds: number;
}

/**
 * Job overhead: trivial jobs under Gantry vs raw dockerode, alternating one
 * by one (latency) and block by block (throughput) in the same run.
 */
export async function benchJobs(g: GantryProc, watcher: DestroyWatcher, cfg: JobsConfig) {
  const rawKinds: { name: string; kind: RawKind; attach: boolean }[] = [
    { name: 'raw', kind: 'same', attach: false },
    { name: 'rawAttach', kind: 'same', attach: true },
    { name: 'rawMinimal', kind: 'minimal', attach: false },
  ];
  const raw = (k: (typeof rawKinds)[number]) => runRaw(rawOptions(k.kind, TRIVIAL, g.env), { attach: k.attach });

  say('jobs: warm-up');
  await gantryJob(g, watcher, true);
  for (const k of rawKinds) await raw(k);

  say(`jobs: latency, ${cfg.jobs} trivial jobs each, alternating`);
  const server: number[] = [];
  const client: number[] = [];
  const removed: number[] = [];
  const raws: Record<string, { totalMs: number[]; toExitMs: number[] }> = Object.fromEntries(
    rawKinds.map((k) => [k.name, { totalMs: [], toExitMs: [] }]),
  );
  const cpu0 = procCpuSeconds(g.pid);
  let gantryCpu = 0;
  for (let i = 0; i < cfg.jobs; i++) {
    // Rotate the order so no contender always runs right after another.
    const steps: (() => Promise<void>)[] = [
      async () => {
        const c0 = procCpuSeconds(g.pid);
        const t = await gantryJob(g, watcher, true);
        gantryCpu += procCpuSeconds(g.pid) - c0;
        server.push(t.serverMs);
        client.push(t.clientMs);
        removed.push(t.removedMs);
      },
      ...rawKinds.map((k) => async () => {
        const t = await raw(k);
        raws[k.name]!.totalMs.push(t.totalMs);
        raws[k.name]!.toExitMs.push(t.toExitMs);
      }),
    ];
    for (let s = 0; s < steps.length; s++) await steps[(i + s) % steps.length]!();
  }
  void cpu0;

  const latency = {
    gantryServer: summary(server),
    gantryClient: summary(client),
    gantryRemoved: summary(removed),
    gantryCpuMsPerJob: round((gantryCpu * 1000) / cfg.jobs, 1),
    ...Object.fromEntries(
      Object.entries(raws).flatMap(([name, v]) => [
        [name, summary(v.totalMs)],
        [`${name}ToExit`, summary(v.toExitMs)],
      ]),
    ),
  } as Record<string, unknown>;

  // CPU ms per job by whom, per block: at concurrency 16 dockerd and
  // containerd saturate the 2 cores, so what Gantry and its client spend per
  // job is taken from the engine.
  type CpuPerJob = { gantry: number; engine: number; bench: number; rest: number };
  const throughput: Record<string, { gantry: number[]; raw: number[]; gantryCpu: CpuPerJob[]; rawCpu: CpuPerJob[] }> = {};
  const perJob = (m: CpuMeter, n: number): CpuPerJob => {
    const c = m.stop();
    const ms = (x: number) => round((x * 1000) / n, 1);
    return { gantry: ms(c.gantry), engine: ms(c.engine), bench: ms(c.bench), rest: ms(c.rest) };
  };
  for (const c of cfg.concurrency) {
    const n = Math.max(cfg.throughputJobs, 2 * c);
    throughput[c] = { gantry: [], raw: [], gantryCpu: [], rawCpu: [] };
    for (let round_ = 0; round_ < cfg.throughputRounds; round_++) {
      say(`jobs: throughput at concurrency ${c}, ${n} jobs, round ${round_ + 1}/${cfg.throughputRounds}`);
      const blocks = [
        async () => {
          // Each worker submits its next job when the previous one is terminal
          // (SSE end); the block ends when every container is removed.
          const t0 = now();
          const cpu = new CpuMeter(g.pid);
          const removals: Promise<number>[] = [];
          await pool(n, c, async () => {
            const t = await gantryJob(g, watcher, false);
            removals.push(t.removed);
          });
          const last = Math.max(...(await within(Promise.all(removals), 120_000, 'removals')));
          throughput[c]!.gantry.push(n / ((last - t0) / 1000));
          throughput[c]!.gantryCpu.push(perJob(cpu, n));
        },
        async () => {
          const t0 = now();
          const cpu = new CpuMeter(null);
          await pool(n, c, () => raw(rawKinds[0]!));
          throughput[c]!.raw.push(n / ((now() - t0) / 1000));
          throughput[c]!.rawCpu.push(perJob(cpu, n));
        },
      ];
      if (round_ % 2 === 1) blocks.reverse();
      for (const b of blocks) await b();
    }
  }
  const tput = Object.fromEntries(
    Object.entries(throughput).map(([c, v]) => [
      c,
      {
        gantryJobsPerS: round(mean(v.gantry), 2),
        rawJobsPerS: round(mean(v.raw), 2),
        gantryRounds: v.gantry.map((x) => round(x, 2)),
        rawRounds: v.raw.map((x) => round(x, 2)),
        cpuMsPerJob: { gantryBlock: v.gantryCpu, rawBlock: v.rawCpu },
      },
    ]),
  );
  return { latency, throughput: tput };
}
