import type { Logger } from 'pino';
import type { GpuAllocator } from '../gpu/allocator.js';
import { decideRetry } from '../jobs/retry-policy.js';
import type { NodeRun } from '../scheduling/decide.js';
import type { Victim } from '../scheduling/preemption.js';
import { type JobRecord, runSettings } from '../store/store.js';
import type { Interruption, JobRun, RunEnd } from './job-run.js';

/** One run this node owns: the run, the record it was launched from, and what the scheduler needs to know of it. */
interface OwnedRun {
  run: JobRun;
  record: JobRecord;
  /** When it started (ms): its container's start, or its launch. */
  startedAt: number;
  /** When its GPUs are free at the latest (its deadline, or launch plus timeout); null for a CPU job. */
  endsBy: number | null;
  /** Whether a preemption is stopping it. */
  preempted: boolean;
  /** Whether it was asked to stop for a cancel (at launch, if the job already was). */
  cancelAsked: boolean;
}

/**
 * The one owner of what runs on this node: every JobRun from its launch to
 * its end, when each started and ends at the latest, the preemptions in
 * flight, and the GPUs it holds. A run's GPUs are released exactly once, when
 * its drive ends, whatever path ended it — and never while Gantry shuts down,
 * since the container then keeps running and the next start re-adopts it.
 * Everyone who acts on a run (a cancel, the GPU sampler, the health monitor,
 * preemption, the fleet's fencing) goes through here by job id.
 */
export class NodeRuns {
  private readonly runs = new Map<string, OwnedRun>();
  /** Jobs waiting for GPUs, each with the jobs preempted for it that still run. */
  private readonly preempting = new Map<string, Set<string>>();
  private readonly endedListeners: ((jobId: string) => void)[] = [];
  private closing = false;

  constructor(
    private readonly gpus: GpuAllocator,
    private readonly log: Logger,
  ) {}

  /**
   * Takes a run in and drives it to its end. Its GPUs (already held in the
   * allocator, by the pass that chose it or by adoption) are released when
   * the drive ends; then those listening hear of the end.
   */
  launch(run: JobRun, record: JobRecord, drive: (run: JobRun) => Promise<RunEnd>): void {
    const now = Date.now();
    const gpuJob = record.gpus.length > 0 || record.spec.gpus !== undefined;
    this.runs.set(record.id, {
      run,
      record,
      startedAt: record.startedAt ? Date.parse(record.startedAt) : now,
      endsBy: gpuJob ? (record.deadlineAt ? Date.parse(record.deadlineAt) : now + runSettings(record).timeoutSeconds * 1000) : null,
      preempted: false,
      cancelAsked: record.cancelRequested,
    });
    void drive(run)
      .catch((err: unknown): RunEnd => {
        this.log.error({ err, jobId: record.id }, 'job run failed unexpectedly');
        return 'ended';
      })
      .then((end) => this.ended(record.id, end));
  }

  /** Whether this node runs the job (from its launch until its run has wholly ended). */
  has(jobId: string): boolean {
    return this.runs.has(jobId);
  }

  /** The attempt the node runs of the job, or undefined when it does not run it. */
  attemptOf(jobId: string): number | undefined {
    return this.runs.get(jobId)?.record.attempt;
  }

  get size(): number {
    return this.runs.size;
  }

  /** The runs as the scheduling pass reads them. */
  snapshot(): NodeRun[] {
    return [...this.runs.values()].map(({ record, startedAt, endsBy, preempted }) => ({
      jobId: record.id,
      owner: record.owner,
      priority: record.priority,
      preemptible: record.spec.preemptible === true,
      startedAt,
      endsBy,
      gpus: this.gpus.allocationOf(record.id)?.uuids.length ?? 0,
      preempted,
    }));
  }

  /** The jobs preempted for each waiting job that still run. */
  preemptions(): ReadonlyMap<string, ReadonlySet<string>> {
    return this.preempting;
  }

  /**
   * Asks the run to stop for a cancel (SIGTERM, grace, SIGKILL), once: a
   * cancel heard again (its notification, then the periodic reconcile)
   * changes nothing. False when this node does not run the job or was
   * asked already.
   */
  requestCancel(jobId: string): boolean {
    const owned = this.runs.get(jobId);
    if (owned === undefined || owned.cancelAsked) return false;
    owned.cancelAsked = true;
    owned.run.requestCancel();
    return true;
  }

  /** Stops a run for a cause of Gantry's (see JobRun.interrupt); false when this node does not run it or it already stops. */
  async interrupt(jobId: string, why: Interruption): Promise<boolean> {
    return (await this.runs.get(jobId)?.run.interrupt(why)) ?? false;
  }

  /** Stops the victims for the waiting job; nothing more is taken for it until they have ended. */
  async preempt(waiter: string, victims: readonly Victim[]): Promise<void> {
    this.preempting.set(waiter, new Set(victims.map((v) => v.jobId)));
    for (const v of victims) {
      const owned = this.runs.get(v.jobId);
      if (owned) owned.preempted = true;
      await owned?.run.interrupt({ cause: 'preempted', reason: v.reason });
    }
  }

  /**
   * Interrupts, with `why`, every run whose job the fleet would start again
   * elsewhere were this node declared lost (its retry rules requeue a
   * node_lost end); returns their job ids. See SelfFence.
   */
  async fence(why: Interruption): Promise<string[]> {
    const now = new Date();
    const retried = [...this.runs.values()].filter(({ record }) => {
      const ended = { cause: 'node_lost' as const, exitCode: null, attempt: record.attempt, history: record.attempts, cancelled: false };
      return decideRetry(record.spec.retry, ended, now).action === 'retry';
    });
    const stopped = await Promise.all(retried.map(async ({ run }) => ((await run.interrupt(why)) ? run.id : null)));
    return stopped.filter((id) => id !== null);
  }

  /** Adds a `[gantry]` line to the log of a job this node runs; nothing if it runs elsewhere. */
  note(jobId: string, line: string): void {
    this.runs.get(jobId)?.run.note(line);
  }

  /** Calls `fn` with each job whose run ended here (its GPUs already released). */
  onEnded(fn: (jobId: string) => void): void {
    this.endedListeners.push(fn);
  }

  /**
   * Abandons every run whose job `stillOurs` says is no longer this run's
   * (the fleet settled it while this node was cut off): its container is
   * killed. Resolves once they are.
   */
  async abandonWhere(stillOurs: (jobId: string, attempt: number) => Promise<string | null>): Promise<void> {
    await Promise.all(
      [...this.runs.values()].map(async ({ run }) => {
        const why = await stillOurs(run.id, run.fence.attempt);
        if (why !== null) await run.abandon(why);
      }),
    );
  }

  /**
   * Stops driving every run without touching its container: the next start
   * re-adopts them. Resolves once no run will create or start a container
   * (a create in flight has landed), or after `boundMs` when one still
   * pulls its image: that job is taken again at the next start.
   */
  async detachAll(boundMs: number): Promise<void> {
    this.closing = true;
    const runs = [...this.runs.values()].map(({ run }) => run);
    for (const run of runs) run.detach();
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<'bound'>((resolve) => (timer = setTimeout(() => resolve('bound'), boundMs)));
    const settled = await Promise.race([Promise.all(runs.map((run) => run.launched)), bound]);
    clearTimeout(timer);
    if (settled === 'bound')
      this.log.warn({ boundMs }, 'runs still preparing when Gantry stopped; their jobs are taken again at the next start');
  }

  /**
   * A run's drive ended. Its GPUs are released unless it was abandoned: the
   * kill of an abandoned run's container may have failed, so its GPUs stay
   * held until the periodic reconcile finds no container of the job
   * running (one card is never given to a second job while the first may
   * still run on it).
   */
  private ended(jobId: string, end: RunEnd): void {
    this.runs.delete(jobId);
    for (const [waiter, victims] of this.preempting) {
      victims.delete(jobId);
      if (victims.size === 0) this.preempting.delete(waiter);
    }
    if (this.closing) return;
    if (end !== 'fenced') this.gpus.release(jobId);
    for (const fn of this.endedListeners) fn(jobId);
  }
}
