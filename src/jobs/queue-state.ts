import type { SpecFieldError } from '../model/errors.js';
import type { WaitInfo } from '../model/queue.js';
import type { JobRecord } from '../store/store.js';
import { QueueIndex } from './queue-index.js';

/** What a scheduling pass decided about the jobs it did not start. */
export interface PassOutcome {
  /** Why this node takes no job at all now; every queued job waits for that. */
  node: WaitInfo | null;
  /** The jobs the pass looked at and left waiting. */
  decided: ReadonlyMap<string, WaitInfo>;
  /** What every job the pass did not reach waits for (a GPU job: `gpu`, if set). */
  beyond: { any: WaitInfo | null; gpu: WaitInfo | null };
}

const PENDING: WaitInfo = { code: 'pending', text: 'queued; not yet considered by a scheduling pass', estimatedStartAt: null };
const NO_PASS: PassOutcome = { node: null, decided: new Map(), beyond: { any: null, gpu: null } };

/**
 * The queue as this node knows it, kept current as jobs come and go rather
 * than read from the store on every change: every queued job no node has
 * taken, fleet-wide, in queue order (for positions), and the subset this
 * node could ever run, all jobs and CPU-only jobs apart (for its scheduling
 * passes, which read only the head). It is fed every job record written
 * here and every change other nodes make (`observe`), and reloaded whole
 * when changes may have been missed (`reset`). The scheduler also records
 * which jobs it has taken and why the others wait.
 */
export class QueueState {
  /** Every queued job no node has taken. */
  readonly all = new QueueIndex();
  /** Those this node could run. */
  readonly here = new QueueIndex();
  /** Those this node could run that need no GPU. */
  readonly hereCpu = new QueueIndex();
  private readonly launched = new Set<string>();
  /** How many of `all` each owner has. */
  private readonly queuedByOwner = new Map<string, number>();
  private pass: PassOutcome = NO_PASS;
  /** Why this node can never run a job, or null; set by the scheduler, which knows the node. */
  private misfit: (record: JobRecord) => SpecFieldError | null = () => null;
  private readonly misfits = new Map<string, SpecFieldError>();
  /** Jobs waiting out a retry's backoff, each with the timer that makes it runnable here. */
  private readonly backoff = new Map<string, { record: JobRecord; timer: NodeJS.Timeout }>();
  /** Told when a job became runnable by the clock (its backoff ended). */
  private onReady: () => void = () => undefined;

  /** Sets who is told when a job's backoff ends (the scheduler, which then looks at the queue). */
  setOnReady(fn: () => void): void {
    this.onReady = fn;
  }

  /** Sets the rule `here` follows and sorts the known jobs again by it. */
  setMisfit(fn: (record: JobRecord) => SpecFieldError | null): void {
    this.misfit = fn;
    this.reset([...this.all.inOrder()]);
  }

  /** Takes in a job as just written or read: queued and untaken, it is in the queue; otherwise not. */
  observe(record: JobRecord): void {
    this.forget(record.id);
    if (record.state !== 'queued' || record.node !== null) return;
    this.all.put(record);
    this.queuedByOwner.set(record.owner, (this.queuedByOwner.get(record.owner) ?? 0) + 1);
    const unfit = this.misfit(record);
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
        this.onReady();
      }, wait);
      timer.unref();
      this.backoff.set(record.id, { record, timer });
      return;
    }
    this.runnable(record);
  }

  private runnable(record: JobRecord): void {
    this.here.put(record);
    if (!record.spec.gpus) this.hereCpu.put(record);
  }

  /** Replaces what is known with the store's queue (after a start or a gap in the change feed). */
  reset(queued: readonly JobRecord[]): void {
    for (const { id } of [...this.all.inOrder()]) this.forget(id);
    for (const r of queued) this.observe(r);
  }

  /** The queued jobs this node can never run, with why. */
  unrunnable(): ReadonlyMap<string, SpecFieldError> {
    return this.misfits;
  }

  markLaunched(jobId: string): void {
    this.launched.add(jobId);
  }

  markDone(jobId: string): void {
    this.launched.delete(jobId);
  }

  isLaunched(jobId: string): boolean {
    return this.launched.has(jobId);
  }

  /** How many queued jobs no node has taken these owners have, fleet-wide (as this node has heard). */
  queuedOf(owners: readonly string[]): number {
    return owners.reduce((n, o) => n + (this.queuedByOwner.get(o) ?? 0), 0);
  }

  /** The job's place in the fleet-wide queue (0 is next), or null when no longer queued. */
  position(jobId: string): number | null {
    return this.all.position(jobId);
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
    if (!this.here.has(record.id)) return PENDING;
    return (record.spec.gpus ? beyond.gpu : null) ?? beyond.any ?? PENDING;
  }

  /** Drops a job that left the queue, known only by its id. */
  drop(id: string): void {
    this.forget(id);
  }

  private forget(id: string): void {
    const known = this.all.get(id);
    if (known) {
      const left = (this.queuedByOwner.get(known.owner) ?? 1) - 1;
      if (left > 0) this.queuedByOwner.set(known.owner, left);
      else this.queuedByOwner.delete(known.owner);
    }
    this.all.delete(id);
    this.here.delete(id);
    this.hereCpu.delete(id);
    this.misfits.delete(id);
    const backingOff = this.backoff.get(id);
    if (backingOff) {
      clearTimeout(backingOff.timer);
      this.backoff.delete(id);
    }
  }
}
