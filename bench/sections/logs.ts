import type { Job } from '../../src/model/job.js';
import { followSse, getJob, jobSpec, submit } from '../lib/client.js';
import { CpuMeter } from '../lib/cpu.js';
import { rawOptions, runRaw } from '../lib/docker.js';
import { BENCH_TOKEN, type GantryProc, procCpuSeconds, procKiB, RssSampler, resetPeak } from '../lib/gantry.js';
import { MB, round, say, sleep, within } from '../lib/util.js';

async function waitEnd(g: GantryProc, id: string): Promise<Job> {
  for (;;) {
    const j = await getJob(g.url, BENCH_TOKEN, id);
    if (j.finishedAt) return j;
    await sleep(250);
  }
}

/** 36 characters + newline: 37-byte lines. */
export const LINE = '012345678901234567890123456789012345';
export const LINE_BYTES = LINE.length + 1;

/** A busybox job writing `mb` megabytes of short lines (a whole number of lines). */
export function logCommand(mb: number): { command: string[]; bytes: number; lines: number } {
  const lines = Math.floor((mb * MB) / LINE_BYTES);
  const bytes = lines * LINE_BYTES;
  return { command: ['sh', '-c', `yes ${LINE} | head -c ${bytes}`], bytes, lines };
}

export interface GantryLogRun {
  /** Gantry's own startedAt → finishedAt. */
  runMs: number;
  /** SSE: first log event → end, for the whole log. */
  sseMs: number;
  sseMBps: number;
  sseLinesPerS: number;
  sseWireMBps: number;
  linesDelivered: number;
  peakRssMB: number;
  rssBeforeMB: number;
  gantryCpuS: number;
  cpu: ReturnType<CpuMeter['stop']>;
}

/** One Gantry job writing the log, with one SSE client following it from the start. */
export async function gantryLogJob(
  g: GantryProc,
  mb: number,
  followers = 1,
): Promise<GantryLogRun & { perClient: { mbps: number; lines: number }[] }> {
  const { command, lines } = logCommand(mb);
  const rssBeforeKiB = procKiB(g.pid, 'VmRSS');
  const peakReset = resetPeak(g.pid);
  const sampler = new RssSampler(g.pid);
  const cpu0 = procCpuSeconds(g.pid);
  const meter = new CpuMeter(g.pid);
  const job = await submit(g.url, BENCH_TOKEN, jobSpec(command));
  const clients = Array.from({ length: followers }, () => followSse(g.url, BENCH_TOKEN, job.id));
  const results = await within(Promise.all(clients.map((c) => c.done)), 900_000, `log job ${job.id}`);
  // No client: wait for the end with cheap polls (4 a second).
  const end = followers > 0 ? results[0]!.end : await within(waitEnd(g, job.id), 900_000, `log job ${job.id}`);
  const cpu = procCpuSeconds(g.pid) - cpu0;
  const cpuBy = meter.stop();
  const sampled = sampler.stop();
  const peakKiB = peakReset ? Math.max(sampled, procKiB(g.pid, 'VmHWM')) : sampled;
  if (end?.state !== 'succeeded') throw new Error(`log job ended ${end?.state}: ${end?.reason}`);
  const perClient = results.map((r) => {
    if (r.lastSeq !== lines) throw new Error(`SSE client got ${r.lastSeq} lines, expected ${lines}`);
    const s = (r.tEnd! - r.tFirstLog!) / 1000;
    return { mbps: (r.lastSeq * LINE_BYTES) / MB / s, lines: r.lastSeq, s, wire: r.wireBytes };
  });
  const first = perClient[0] ?? { s: Number.NaN, mbps: Number.NaN, lines: 0, wire: 0 };
  return {
    runMs: Date.parse(end.finishedAt!) - Date.parse(end.startedAt!),
    sseMs: round(first.s * 1000, 0),
    sseMBps: round(first.mbps, 2),
    sseLinesPerS: round(first.lines / first.s, 0),
    sseWireMBps: round(first.wire / MB / first.s, 2),
    linesDelivered: first.lines,
    peakRssMB: round(peakKiB / 1024, 1),
    rssBeforeMB: round(rssBeforeKiB / 1024, 1),
    gantryCpuS: round(cpu, 2),
    cpu: cpuBy,
    perClient: perClient.map((p) => ({ mbps: round(p.mbps, 2), lines: p.lines })),
  };
}

export interface LogsConfig {
  mb: number;
  rounds: number;
  /**
   * How many times the job with no client and the plain attach (the pair
   * behind the 1.1× target) are each measured in all: the rounds' samples
   * plus extra pairs, alternating. One sample of each put the ratio anywhere
   * in 1.04–1.15 from run to run with no change to Gantry.
   */
  wallRounds: number;
}

/**
 * For one log driver: the job under Gantry (with no client, and with an SSE
 * follower), the same container with plain attach, and `docker logs
 * --follow` over the API, in rotating order; then more pairs of the job with
 * no client and the plain attach, up to `wallRounds` of each.
 */
export async function benchLogs(g: GantryProc, driver: string, cfg: LogsConfig) {
  const { command, bytes } = logCommand(cfg.mb);
  const env = { ...g.env, GANTRY_LOG_DRIVER: driver };
  const gantry: GantryLogRun[] = [];
  const alone: GantryLogRun[] = [];
  const attach: { runMs: number; MBps: number; cpu: ReturnType<CpuMeter['stop']> }[] = [];
  const follow: { runMs: number; MBps: number; cpu: ReturnType<CpuMeter['stop']> }[] = [];
  const steps = {
    alone: async () => {
      say(`logs[${driver}]: Gantry job, ${cfg.mb} MB, no client (capture alone)`);
      const { perClient: _p, ...r } = await gantryLogJob(g, cfg.mb, 0);
      alone.push(r);
    },
    gantry: async () => {
      say(`logs[${driver}]: Gantry job, ${cfg.mb} MB, one SSE follower`);
      const { perClient: _p, ...r } = await gantryLogJob(g, cfg.mb);
      gantry.push(r);
    },
    attach: async () => {
      say(`logs[${driver}]: plain attach, ${cfg.mb} MB`);
      const meter = new CpuMeter(null);
      const r = await runRaw(rawOptions('same', command, env), { attach: true });
      if (r.payloadBytes !== bytes) throw new Error(`attach got ${r.payloadBytes} bytes, expected ${bytes}`);
      attach.push({ runMs: round(r.runMs, 0), MBps: round(bytes / MB / (r.runMs / 1000), 2), cpu: meter.stop() });
    },
    follow: async () => {
      say(`logs[${driver}]: docker logs --follow over the API, ${cfg.mb} MB`);
      const meter = new CpuMeter(null);
      const r = await runRaw(rawOptions('same', command, env), { followLogs: true });
      if (r.payloadBytes !== bytes) throw new Error(`logs --follow got ${r.payloadBytes} bytes, expected ${bytes}`);
      const s = (r.runMs - (r.firstByteMs ?? 0)) / 1000;
      follow.push({ runMs: round(r.runMs, 0), MBps: round(bytes / MB / s, 2), cpu: meter.stop() });
    },
  };
  // BENCH_LOG_STEPS=alone,gantry,attach,follow picks steps (profiling one side alone).
  const names = Object.keys(steps) as (keyof typeof steps)[];
  const pick = (process.env.BENCH_LOG_STEPS ?? names.join(',')).split(',');
  const chosen = names.filter((n) => pick.includes(n)).map((n) => steps[n]);
  for (let r = 0; r < cfg.rounds; r++) {
    for (let s = 0; s < chosen.length; s++) await chosen[(r + s) % chosen.length]!();
  }
  if (pick.includes('alone') && pick.includes('attach')) {
    for (let r = 0; alone.length < cfg.wallRounds || attach.length < cfg.wallRounds; r++) {
      const pair = r % 2 === 0 ? [steps.attach, steps.alone] : [steps.alone, steps.attach];
      for (const step of pair) await step();
    }
  }
  return { driver, mb: cfg.mb, alone, gantry, attach, follow };
}
