import type { JobRecord, UsageInterval } from '../store/store.js';

/** A stretch of time during which one attempt of a job held some GPUs. Times in epoch milliseconds. */
export interface GpuInterval {
  attempt: number;
  gpus: readonly string[];
  startMs: number;
  endMs: number;
}

/** A half-open span of time, [fromMs, toMs), in epoch milliseconds. */
export interface UsageWindow {
  fromMs: number;
  toMs: number;
}

/** An owner's GPU use within a window. */
export interface OwnerGpuUsage {
  owner: string;
  /** Σ over intervals of (seconds inside the window × GPUs held). */
  gpuSeconds: number;
  /** Jobs with at least one interval inside the window. */
  jobs: number;
  /** Attempts with an interval inside the window. */
  attempts: number;
  /** gpuSeconds split by the card's UUID. */
  byGpu: Map<string, number>;
}

/**
 * The intervals during which a job's attempts held GPUs, oldest first, as
 * its record says: GPU time is container time, from the attempt's
 * `startedAt` (its container started) to its end; pulling and starting,
 * though they hold the cards, are not counted, and an attempt that never
 * started counts nothing.
 * - Each ended attempt (`record.attempts`) with GPUs and a start: from its
 *   `startedAt` to its `finishedAt`.
 * - The current attempt, when it has GPUs and a start and is not among the
 *   ended ones: to `record.finishedAt` if the job ended without recording
 *   the attempt (a container found vanished after a restart), else to
 *   `nowMs` (it is still running).
 * An interval whose end precedes its start (clocks of two nodes) is empty.
 */
export function gpuIntervals(
  record: Pick<JobRecord, 'attempt' | 'attempts' | 'gpus' | 'startedAt' | 'finishedAt'>,
  nowMs: number,
): GpuInterval[] {
  const out: GpuInterval[] = [];
  const add = (attempt: number, gpus: readonly string[], startedAt: string | null, endMs: number) => {
    if (startedAt === null || gpus.length === 0) return;
    const startMs = Date.parse(startedAt);
    out.push({ attempt, gpus, startMs, endMs: Math.max(startMs, endMs) });
  };
  for (const a of record.attempts) add(a.attempt, a.gpus, a.startedAt, Date.parse(a.finishedAt));
  if (!record.attempts.some((a) => a.attempt === record.attempt)) {
    add(record.attempt, record.gpus, record.startedAt, record.finishedAt === null ? nowMs : Date.parse(record.finishedAt));
  }
  return out;
}

/** Milliseconds of the interval inside the window (0 when they do not meet). */
export function overlapMs(interval: Pick<GpuInterval, 'startMs' | 'endMs'>, window: UsageWindow): number {
  return Math.max(0, Math.min(interval.endMs, window.toMs) - Math.max(interval.startMs, window.fromMs));
}

/**
 * The GPU intervals of jobs whose records retention pruned, as it kept them
 * (store.ts, UsageInterval), one entry per job.
 */
function prunedJobs(pruned: Iterable<UsageInterval>): { owner: string; intervals: GpuInterval[] }[] {
  const byJob = new Map<string, { owner: string; intervals: GpuInterval[] }>();
  for (const u of pruned) {
    let job = byJob.get(u.jobId);
    if (!job) byJob.set(u.jobId, (job = { owner: u.owner, intervals: [] }));
    job.intervals.push({ attempt: u.attempt, gpus: u.gpus, startMs: Date.parse(u.startedAt), endMs: Date.parse(u.endedAt) });
  }
  return [...byJob.values()];
}

/**
 * GPU-seconds per owner over the window, from job records (gpuIntervals,
 * each clipped to the window) and the kept intervals of pruned jobs. Every
 * GPU an attempt held counts whole for it, a card shared by declared memory
 * too: an attempt's record keeps the cards it had, not the share it
 * declared. Owners with no GPU time inside the window are absent; the rest
 * come in descending gpuSeconds, then by name. Pure: the caller chooses the
 * records (any superset of the jobs that could have held GPUs in the
 * window) and the clock.
 */
export function gpuSecondsByOwner(
  records: Iterable<JobRecord>,
  window: UsageWindow,
  nowMs: number,
  pruned: Iterable<UsageInterval> = [],
): OwnerGpuUsage[] {
  const byOwner = new Map<string, OwnerGpuUsage>();
  const jobs = [...[...records].map((r) => ({ owner: r.owner, intervals: gpuIntervals(r, nowMs) })), ...prunedJobs(pruned)];
  for (const job of jobs) {
    let counted = false;
    for (const interval of job.intervals) {
      const ms = overlapMs(interval, window);
      if (ms === 0) continue;
      let usage = byOwner.get(job.owner);
      if (!usage) {
        usage = { owner: job.owner, gpuSeconds: 0, jobs: 0, attempts: 0, byGpu: new Map() };
        byOwner.set(job.owner, usage);
      }
      const seconds = ms / 1000;
      usage.gpuSeconds += seconds * interval.gpus.length;
      for (const uuid of interval.gpus) usage.byGpu.set(uuid, (usage.byGpu.get(uuid) ?? 0) + seconds);
      usage.attempts += 1;
      if (!counted) usage.jobs += 1;
      counted = true;
    }
  }
  return [...byOwner.values()].sort((a, b) => b.gpuSeconds - a.gpuSeconds || a.owner.localeCompare(b.owner));
}
