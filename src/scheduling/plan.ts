import type { Allocation, GpuAllocator } from '../gpu/allocator.js';
import type { GpuRequest } from '../model/job.js';
import type { WaitInfo } from '../model/queue.js';

/** A queued job as the queue policy sees it, in scheduling order. */
export interface QueueEntry {
  id: string;
  owner: string;
  gpus?: GpuRequest | undefined;
  /** Only GPUs of this model (a part of their name) will do. */
  model?: string | undefined;
  /** How long it may run once started: a job shorter than the wait for the reservation may use free GPUs meanwhile. */
  timeoutSeconds: number;
}

/** A job holding GPUs now, and when it ends at the latest (its timeout). */
export interface RunningJob {
  jobId: string;
  endsBy: number;
}

export type QueueDecision = { id: string; action: 'start'; alloc: Allocation | null } | { id: string; action: 'wait'; wait: WaitInfo };

export interface QueuePlan {
  /** Every job the pass looked at, in order. */
  decisions: QueueDecision[];
  /** What the jobs the pass did not reach wait for (GPU jobs: `gpu` when set), unless their owner's limits closed their queue. */
  beyond: Beyond;
}

/**
 * What the jobs a pass did not reach wait for. Behind the GPU reservation,
 * `gpu` names no job: only the reservation's own owner is told which job
 * holds it (`reservation`), every other owner that a job with a better
 * claim does, so no owner learns another's job ids.
 */
export interface Beyond {
  any: WaitInfo | null;
  gpu: WaitInfo | null;
  reservation?: { owner: string; wait: WaitInfo };
}

/** Limits on what an owner may run (its team's quota), kept over one pass. */
export interface Limits {
  /** Why the job may not start now for its owner's limits, or null. */
  check(e: QueueEntry): WaitInfo | null;
  /** The job starts: it counts against its owner's limits from now on. */
  take(e: QueueEntry): void;
  /** Why none of the owner's jobs (`gpu`: none of its GPU jobs) may start now, or null: the pass passes over a closed queue unread. */
  closed(owner: string, gpu: boolean): WaitInfo | null;
}

/**
 * GPU jobs a pass looks at behind a reservation, for one that ends before
 * it; the rest wait without being looked at, so a pass costs the same
 * however deep the queue is.
 */
export const BACKFILL_WINDOW = 64;

export interface PlanInput {
  /**
   * The jobs this host could run, in scheduling order (priority descending,
   * then FIFO), without the owners' queues `skip` names; it is asked before
   * each step, so a queue closed during the pass is read no further.
   */
  queue: (skip: (owner: string, gpu: boolean) => boolean) => Iterable<QueueEntry>;
  /** The owners' limits; null for none. */
  limits: Limits | null;
  gpus: GpuAllocator;
  freeSlots: number;
  maxRunning: number;
  /** The jobs holding GPUs, for when the reservation's GPUs free up; a holder not listed is taken to hold them for good. */
  running: readonly RunningJob[];
  now: number;
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * One pass over the head of the queue; each job it looks at either starts
 * (GPUs allocated now) or waits, and it stops as soon as the rest can only
 * wait, so its cost does not grow with the queue's depth.
 *
 * The oldest GPU job (in order) that cannot start holds a reservation: no
 * later GPU job may take GPUs unless it ends, by its timeout, before the
 * reservation's GPUs are expected free (the running jobs' timeouts), so it
 * can never delay it (backfill). A large request is thus never starved by a
 * stream of small ones. CPU jobs do not wait behind it, but every job needs
 * one of the `freeSlots` run slots, taken in order.
 */
export function planQueue(p: PlanInput): QueuePlan {
  const decisions: QueueDecision[] = [];
  const runSlot: WaitInfo = {
    code: 'run_slot',
    text: `waiting for a run slot (GANTRY_MAX_RUNNING=${p.maxRunning})`,
    estimatedStartAt: null,
  };
  let slots = p.freeSlots;
  let reservation: { id: string; at: number | null } | null = null;
  let behind: { owner: string; own: WaitInfo; other: WaitInfo } | null = null;
  let looked = 0;
  // GPU holders by when they end at the latest: those running and those this pass starts.
  const holders = [...p.running];
  const decide = (d: QueueDecision) => decisions.push(d);
  const start = (e: QueueEntry, alloc: Allocation | null) => {
    slots -= 1;
    p.limits?.take(e);
    decide({ id: e.id, action: 'start', alloc });
  };

  // Behind the reservation, after the backfill window, GPU queues are read no further.
  let cpuOnly = false;
  const skip = (owner: string, gpu: boolean) => (gpu && cpuOnly) || (p.limits?.closed(owner, gpu) ?? null) !== null;
  for (const e of p.queue(skip)) {
    if (slots <= 0) return { decisions, beyond: { any: runSlot, ...beyondGpu(behind) } };
    const refused = p.limits?.check(e) ?? null;
    if (refused) {
      decide({ id: e.id, action: 'wait', wait: refused });
      continue;
    }
    if (!e.gpus) {
      start(e, null);
      continue;
    }
    if (reservation === null) {
      const alloc = p.gpus.tryAllocate(e.id, e.gpus, e.model);
      if (alloc) {
        holders.push({ jobId: e.id, endsBy: p.now + e.timeoutSeconds * 1000 });
        start(e, alloc);
        continue;
      }
      // Only cards out of service could run it: it waits for an admin, not for jobs to end, so it reserves nothing.
      const down = p.gpus.outOfService(e.id, e.gpus, e.model);
      if (down) {
        decide({ id: e.id, action: 'wait', wait: down });
        continue;
      }
      const at = reservedFrom(p.gpus, holders, e, p.now);
      reservation = { id: e.id, at };
      const rest = at === null ? '' : ` (expected by ${iso(at)}); only jobs that end before then may take free GPUs`;
      behind = {
        owner: e.owner,
        own: {
          code: `reserved_for:${e.id}`,
          text: `waiting behind job ${e.id}, which holds the GPU reservation${rest}`,
          estimatedStartAt: null,
        },
        other: {
          code: 'reserved',
          text: `waiting behind a job with a better claim, which holds the GPU reservation${rest}`,
          estimatedStartAt: null,
        },
      };
      decide({
        id: e.id,
        action: 'wait',
        wait: {
          code: 'gpus',
          text: `waiting for GPUs${at === null ? '' : `, expected free by ${iso(at)} at the latest (the running jobs' timeouts)`}`,
          estimatedStartAt: at === null ? null : iso(at),
        },
      });
      continue;
    }
    const fitsBefore = reservation.at !== null && p.now + e.timeoutSeconds * 1000 <= reservation.at;
    const alloc = fitsBefore ? p.gpus.tryAllocate(e.id, e.gpus, e.model) : null;
    if (alloc) start(e, alloc);
    else decide({ id: e.id, action: 'wait', wait: e.owner === behind!.owner ? behind!.own : behind!.other });
    looked += 1;
    // The remaining GPU jobs all wait behind the reservation: read only CPU jobs from here.
    if (looked >= BACKFILL_WINDOW) cpuOnly = true;
  }
  return { decisions, beyond: { any: null, ...beyondGpu(behind) } };
}

function beyondGpu(behind: { owner: string; own: WaitInfo; other: WaitInfo } | null): Omit<Beyond, 'any'> {
  return behind ? { gpu: behind.other, reservation: { owner: behind.owner, wait: behind.own } } : { gpu: null };
}

/**
 * When the entry's GPUs are expected free: the running jobs end, at the
 * latest, by their timeouts; the first of those ends after which the request
 * fits. Null when it never would by the jobs known to hold GPUs.
 */
function reservedFrom(gpus: GpuAllocator, holders: readonly RunningJob[], e: QueueEntry, now: number): number | null {
  if (holders.length === 0) return null;
  const what = gpus.clone();
  for (const r of [...holders].sort((a, b) => a.endsBy - b.endsBy)) {
    what.release(r.jobId);
    if (what.tryAllocate(e.id, e.gpus!, e.model)) return Math.max(r.endsBy, now);
  }
  return null;
}
