import type { SpecFieldError } from '../model/errors.js';
import type { WaitInfo } from '../model/queue.js';
import type { JobRecord } from '../store/store.js';
import { FairShare } from './fair-share.js';
import { mergedInOrder } from './merged-queues.js';
import type { Beyond } from './plan.js';
import { QueueIndex } from './queue-index.js';
import { Quotas } from './quotas.js';
import { gpuIntervals } from './usage.js';

/** What a scheduling pass decided about the jobs it did not start. */
export interface PassOutcome {
  /** Why this node takes no job at all now; every queued job waits for that. */
  node: WaitInfo | null;
  /** The jobs the pass looked at and left waiting. */
  decided: ReadonlyMap<string, WaitInfo>;
  /** What every job the pass did not reach waits for (a GPU job: `gpu`, if set; a job of an owner the pass skipped: `owners`). */
  beyond: Beyond & { owners?: ReadonlyMap<string, { any: WaitInfo | null; gpu: WaitInfo | null }> };
}

/** What a job of `owner` that the pass did not reach waits for: its closed queue, else the reservation (named to its own owner only), else the run slots. */
export function beyondWait(beyond: PassOutcome['beyond'], owner: string, gpu: boolean): WaitInfo | null {
  const closed = beyond.owners?.get(owner);
  const reserved = beyond.reservation?.owner === owner ? beyond.reservation.wait : beyond.gpu;
  return (gpu ? closed?.gpu : null) ?? closed?.any ?? (gpu ? reserved : null) ?? beyond.any;
}

/** A job a node has taken and not ended, as quotas count it. */
export interface ActiveJob {
  owner: string;
  /** GPUs it holds, or asked for while it is not yet given them (a shared card counts as one). */
  gpus: number;
}

const PENDING: WaitInfo = { code: 'pending', text: 'queued; not yet considered by a scheduling pass', estimatedStartAt: null };
const NO_PASS: PassOutcome = { node: null, decided: new Map(), beyond: { any: null, gpu: null } };
const ACTIVE_STATES = new Set(['pulling', 'starting', 'running']);
/** How long positions reuse one ranking of the owners (fair-share ranks move slowly). */
const RANKS_TTL_MS = 1000;

/** A job's place by fair share: higher priority first, then the owner's rank (lower first), then FIFO. Negative: `a` first. */
export type RankedOrder = (a: JobRecord, b: JobRecord) => number;
const rankedOrder =
  (rank: (owner: string) => number): RankedOrder =>
  (a, b) =>
    b.priority - a.priority || rank(a.owner) - rank(b.owner) || a.seq - b.seq;

/** GPUs a job asks for: a count, named cards, or one shared card. */
export function gpusAsked(record: JobRecord): number {
  if (record.gpus.length > 0) return record.gpus.length;
  const g = record.spec.gpus;
  return g === undefined ? 0 : (g.ids?.length ?? g.count ?? 0);
}

/**
 * The queue as this node knows it, kept current as jobs come and go rather
 * than read from the store on every change: every queued job no node has
 * taken, fleet-wide, in queue order (for positions); the ones this node
 * could run, in one queue per owner and kind (CPU, GPU), which a scheduling
 * pass reads merged in queue order, passing over whole queues an owner's
 * limits close; and the jobs nodes have taken and not ended, by owner (for
 * quotas), whose GPU time feeds fair share. It is fed every job record
 * written here and every change other nodes make (`observe`), and reloaded
 * whole when changes may have been missed (`reset`). The scheduler also
 * records why the jobs it did not start wait.
 *
 * Order is fair share's: priority, then the owner's rank (its recent GPU
 * use against its share), then FIFO; the owners' queues are each FIFO
 * within a priority, so only their heads are compared.
 */
export class QueueState {
  /** Every queued job no node has taken. */
  readonly all = new QueueIndex();
  /** The same, by owner (for positions under fair share). */
  private readonly allByOwner = new Map<string, QueueIndex>();
  private ranks: { at: number; rank: (owner: string) => number } | null = null;
  /** Those this node could run now, by owner and kind. */
  private readonly streams = new Map<string, { cpu: QueueIndex; gpu: QueueIndex }>();
  /** How many of `all` each owner has. */
  private readonly queuedByOwner = new Map<string, number>();
  /** Jobs a node has taken and not ended, fleet-wide, and their sums by owner. */
  private readonly active = new Map<string, ActiveJob>();
  private readonly activeByOwner = new Map<string, { jobs: number; gpus: number }>();
  private pass: PassOutcome = NO_PASS;
  private readonly misfits = new Map<string, SpecFieldError>();
  /** Jobs waiting out a retry's backoff, each with the timer that makes it runnable here. */
  private readonly backoff = new Map<string, { record: JobRecord; timer: NodeJS.Timeout }>();
  private readonly readyListeners: (() => void)[] = [];

  /**
   * @param misfitOf why this node can never run a job, or null when it could
   *   (placement.ts); such a job stays in the queue for other nodes, and
   *   never among those this node's passes read.
   */
  constructor(
    readonly fairShare: FairShare = new FairShare(0, new Quotas()),
    readonly misfitOf: (record: JobRecord) => SpecFieldError | null = () => null,
  ) {}

  /** Calls `fn` each time a job becomes runnable by the clock (its retry's backoff ended). */
  onReady(fn: () => void): void {
    this.readyListeners.push(fn);
  }

  /**
   * Takes in a job as just written or read: queued and untaken, it is in the
   * queue; taken and not ended, it counts as active; otherwise neither.
   */
  observe(record: JobRecord): void {
    this.forget(record.id);
    this.fairShare.observe(record);
    if (record.node !== null && (ACTIVE_STATES.has(record.state) || record.state === 'queued')) {
      this.activate(record.id, { owner: record.owner, gpus: gpusAsked(record) });
      return;
    }
    if (record.state !== 'queued') return;
    this.all.put(record);
    let mine = this.allByOwner.get(record.owner);
    if (mine === undefined) this.allByOwner.set(record.owner, (mine = new QueueIndex()));
    mine.put(record);
    this.queuedByOwner.set(record.owner, (this.queuedByOwner.get(record.owner) ?? 0) + 1);
    const unfit = this.misfitOf(record);
    if (unfit !== null) {
      this.misfits.set(record.id, unfit);
      return;
    }
    const wait = record.notBefore === null ? 0 : Date.parse(record.notBefore) - Date.now();
    if (wait > 0) {
      // Not runnable until its backoff ends; it keeps its place in the queue meanwhile.
      const timer = setTimeout(() => {
        if (this.backoff.get(record.id)?.record !== record) return;
        this.backoff.delete(record.id);
        this.runnable(record);
        for (const fn of this.readyListeners) fn();
      }, wait);
      timer.unref();
      this.backoff.set(record.id, { record, timer });
      return;
    }
    this.runnable(record);
  }

  /**
   * Replaces what is known with the store's queue and active jobs (after a
   * start or a gap in the change feed), and fair share's use with what the
   * `recent` jobs' records say (every attempt that ended; a running one is
   * counted as it runs).
   */
  reset(queued: readonly JobRecord[], active: readonly JobRecord[] = [], recent: readonly JobRecord[] = []): void {
    for (const { id } of [...this.all.inOrder()]) this.forget(id);
    for (const id of [...this.active.keys()]) this.forget(id);
    this.fairShare.clear();
    this.ranks = null;
    const now = Date.now();
    for (const r of recent) {
      for (const i of gpuIntervals(r, now)) {
        const running = r.state === 'running' && i.attempt === r.attempt;
        if (!running) this.fairShare.add(r.owner, i.gpus.length, i.startMs, i.endMs);
      }
    }
    for (const r of [...queued, ...active]) this.observe(r);
  }

  /** The owners with jobs this node could run now. */
  owners(): IterableIterator<string> {
    return this.streams.keys();
  }

  /** The queued jobs this node can never run, with why. */
  unrunnable(): ReadonlyMap<string, SpecFieldError> {
    return this.misfits;
  }

  /**
   * The jobs this node could run now, in queue order (priority, then FIFO),
   * merged from the owners' queues; `skip` is asked before each step, and
   * a queue it names is passed over unread. A pass may take jobs out as it
   * goes: each queue resumes after the last job it gave.
   */
  runnableInOrder(skip: (owner: string, gpu: boolean) => boolean, order: RankedOrder = this.order()): IterableIterator<JobRecord> {
    return mergedInOrder(this.streams, skip, order);
  }

  /** How many queued jobs no node has taken these owners have, fleet-wide (as this node has heard). */
  queuedOf(owners: readonly string[]): number {
    return owners.reduce((n, o) => n + (this.queuedByOwner.get(o) ?? 0), 0);
  }

  /** GPUs asked for by the first of these owners' GPU jobs this node could run (priority, then FIFO), or null for none. */
  nextGpuJobOf(owners: readonly string[]): number | null {
    let first: JobRecord | null = null;
    for (const o of owners) {
      const head = this.streams.get(o)?.gpu.inOrder().next().value;
      if (head && (first === null || head.priority > first.priority || (head.priority === first.priority && head.seq < first.seq)))
        first = head;
    }
    return first === null ? null : gpusAsked(first);
  }

  /** The jobs these owners have taken and not ended, and the GPUs they hold, fleet-wide (as this node has heard). */
  activeOf(owners: readonly string[]): { jobs: number; gpus: number } {
    let jobs = 0;
    let gpus = 0;
    for (const o of owners) {
      const a = this.activeByOwner.get(o);
      jobs += a?.jobs ?? 0;
      gpus += a?.gpus ?? 0;
    }
    return { jobs, gpus };
  }

  /** Whether a node has taken the job and not ended it (as this node has heard). */
  isActive(jobId: string): boolean {
    return this.active.has(jobId);
  }

  /** The queue's order now, for one scheduling pass: fair share's ranks are taken once, here. */
  order(now = Date.now()): RankedOrder {
    return rankedOrder(this.fairShare.ranks(now));
  }

  /** The job's place in the fleet-wide queue (0 is next), or null when no longer queued. */
  position(jobId: string): number | null {
    const record = this.all.get(jobId);
    return record === undefined ? null : this.placeAmongAll(record);
  }

  /** The place a job of this owner and priority submitted now would take (0 is next). */
  placeFor(owner: string, priority: number): number {
    return this.placeAmongAll({ owner, priority, seq: Number.POSITIVE_INFINITY });
  }

  /**
   * How many queued jobs come before a job of this owner, priority and seq:
   * each owner's queue is in order, so that is a count per owner (a binary
   * search): those of a higher priority, and at the same priority those of
   * an owner ranked first, or of one ranked the same and submitted earlier.
   */
  private placeAmongAll(job: Pick<JobRecord, 'owner' | 'priority' | 'seq'>): number {
    if (!this.fairShare.enabled) return this.all.countBefore(job);
    const now = Date.now();
    if (this.ranks === null || now - this.ranks.at > RANKS_TTL_MS) this.ranks = { at: now, rank: this.fairShare.ranks(now) };
    const { rank } = this.ranks;
    const mine = rank(job.owner);
    let place = 0;
    for (const [owner, index] of this.allByOwner) {
      const theirs = rank(owner);
      if (theirs < mine) place += index.countAbove(job.priority, true);
      else if (theirs > mine) place += index.countAbove(job.priority, false);
      else place += index.countBefore(job);
    }
    return place;
  }

  /** Records what the latest scheduling pass decided (it replaces the previous one's). */
  setPass(outcome: PassOutcome): void {
    this.pass = outcome;
  }

  /** Why the queued job waits, as the latest pass of this node sees it. */
  waiting(record: JobRecord): WaitInfo {
    const { node, decided, beyond } = this.pass;
    if (node) return node;
    const unfit = this.misfits.get(record.id);
    if (unfit) {
      return {
        code: 'not_here',
        text: `this node cannot run it (${unfit.path}: ${unfit.message}); waiting for a node that can`,
        estimatedStartAt: null,
      };
    }
    const backingOff = this.backoff.get(record.id);
    if (backingOff?.record.notBefore) {
      const until = backingOff.record.notBefore;
      return {
        code: 'backoff',
        text: `waiting until ${until} before attempt ${record.attempt} (the retry's backoff)`,
        estimatedStartAt: until,
      };
    }
    const seen = decided.get(record.id);
    if (seen) return seen;
    if (!this.isRunnable(record)) return PENDING;
    return beyondWait(beyond, record.owner, Boolean(record.spec.gpus)) ?? PENDING;
  }

  /** Drops a job that left the queue or ended, known only by its id. */
  drop(id: string): void {
    this.forget(id);
    this.fairShare.release(id, Date.now());
  }

  private isRunnable(record: JobRecord): boolean {
    const s = this.streams.get(record.owner);
    return s !== undefined && (s.cpu.has(record.id) || s.gpu.has(record.id));
  }

  private runnable(record: JobRecord): void {
    let s = this.streams.get(record.owner);
    if (s === undefined) this.streams.set(record.owner, (s = { cpu: new QueueIndex(), gpu: new QueueIndex() }));
    (record.spec.gpus ? s.gpu : s.cpu).put(record);
  }

  private activate(id: string, job: ActiveJob): void {
    this.active.set(id, job);
    const sum = this.activeByOwner.get(job.owner) ?? { jobs: 0, gpus: 0 };
    this.activeByOwner.set(job.owner, { jobs: sum.jobs + 1, gpus: sum.gpus + job.gpus });
  }

  private forget(id: string): void {
    const known = this.all.get(id);
    if (known) {
      const left = (this.queuedByOwner.get(known.owner) ?? 1) - 1;
      if (left > 0) this.queuedByOwner.set(known.owner, left);
      else this.queuedByOwner.delete(known.owner);
      const s = this.streams.get(known.owner);
      if (s) {
        s.cpu.delete(id);
        s.gpu.delete(id);
        if (s.cpu.isEmpty() && s.gpu.isEmpty()) this.streams.delete(known.owner);
      }
    }
    if (known) {
      const mine = this.allByOwner.get(known.owner);
      mine?.delete(id);
      if (mine?.isEmpty()) this.allByOwner.delete(known.owner);
    }
    this.all.delete(id);
    this.misfits.delete(id);
    const backingOff = this.backoff.get(id);
    if (backingOff) {
      clearTimeout(backingOff.timer);
      this.backoff.delete(id);
    }
    const running = this.active.get(id);
    if (running) {
      this.active.delete(id);
      const sum = this.activeByOwner.get(running.owner)!;
      const left = { jobs: sum.jobs - 1, gpus: sum.gpus - running.gpus };
      if (left.jobs > 0) this.activeByOwner.set(running.owner, left);
      else this.activeByOwner.delete(running.owner);
    }
  }
}
