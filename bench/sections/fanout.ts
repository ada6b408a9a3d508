import type { Job } from '../../src/model/job.js';
import { cancel, followSse, getJob, jobSpec, type SseHandle, submit } from '../lib/client.js';
import { BENCH_TOKEN, type GantryProc, procKiB, RssSampler } from '../lib/gantry.js';
import { median, round, say, sleep, within } from '../lib/util.js';
import { gantryLogJob } from './logs.js';

export interface FanoutConfig {
  idleClients: number;
  idleJobs: number;
  busyClients: number;
  busyMb: number;
}

async function waitRunning(g: GantryProc, id: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const j = await getJob(g.url, BENCH_TOKEN, id);
    if (j.state === 'running') return;
    if (j.finishedAt) throw new Error(`idle job ${id} ended ${j.state}: ${j.reason}`);
    if (Date.now() > deadline) throw new Error(`idle job ${id} not running after 120 s`);
    await sleep(100);
  }
}

/** 1,000 idle SSE clients on running jobs (Gantry's RSS), then 100 clients on one busy job. */
export async function benchFanout(g: GantryProc, cfg: FanoutConfig) {
  say(`fanout: ${cfg.idleJobs} sleeping jobs, ${cfg.idleClients} idle SSE clients`);
  const jobs: Job[] = [];
  for (let i = 0; i < cfg.idleJobs; i++) jobs.push(await submit(g.url, BENCH_TOKEN, jobSpec(['sleep', '300'])));
  for (const j of jobs) await waitRunning(g, j.id);
  await sleep(1000);
  const rssBeforeMB = procKiB(g.pid, 'VmRSS') / 1024;
  const sampler = new RssSampler(g.pid, 100);
  const clients: SseHandle[] = [];
  let idle: Record<string, number>;
  try {
    // Connect in batches of 100 (the listen backlog is finite).
    for (let i = 0; i < cfg.idleClients; i += 100) {
      const batch = Array.from({ length: Math.min(100, cfg.idleClients - i) }, (_, k) =>
        followSse(g.url, BENCH_TOKEN, jobs[(i + k) % jobs.length]!.id),
      );
      clients.push(...batch);
      await within(Promise.all(batch.map((c) => c.connected)), 60_000, 'idle clients connecting');
    }
    await sleep(3000);
    const rssWithMB = procKiB(g.pid, 'VmRSS') / 1024;
    const peakMB = sampler.stop() / 1024;
    idle = {
      clients: clients.length,
      rssBeforeMB: round(rssBeforeMB, 1),
      rssMB: round(rssWithMB, 1),
      peakRssMB: round(peakMB, 1),
      kbPerClient: round(((rssWithMB - rssBeforeMB) * 1024) / clients.length, 1),
    };
  } finally {
    sampler.stop();
    for (const c of clients) c.close();
    for (const j of jobs) await cancel(g.url, BENCH_TOKEN, j.id);
  }
  for (const j of jobs) {
    const deadline = Date.now() + 60_000;
    while (!(await getJob(g.url, BENCH_TOKEN, j.id)).finishedAt && Date.now() < deadline) await sleep(200);
  }
  await sleep(2000);

  say(`fanout: ${cfg.busyClients} SSE clients following one job writing ${cfg.busyMb} MB`);
  const busy = await gantryLogJob(g, cfg.busyMb, cfg.busyClients);
  const rates = busy.perClient.map((p) => p.mbps);
  return {
    idle,
    busy: {
      clients: cfg.busyClients,
      mb: cfg.busyMb,
      runMs: busy.runMs,
      perClientMBpsMedian: round(median(rates), 2),
      perClientMBpsMin: round(Math.min(...rates), 2),
      aggregateMBps: round(
        rates.reduce((a, b) => a + b, 0),
        1,
      ),
      peakRssMB: busy.peakRssMB,
      gantryCpuS: busy.gantryCpuS,
      cpu: busy.cpu,
    },
  };
}
