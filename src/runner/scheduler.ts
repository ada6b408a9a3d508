import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Allocation, GpuAllocator } from '../gpu/allocator.js';
import type { JobEventHub } from '../jobs/events.js';
import type { JobService } from '../jobs/service.js';
import type { WaitInfo } from '../model/queue.js';
import { isTerminal } from '../model/states.js';
import type { ContainerRuntime, ManagedContainer } from '../runtime/runtime.js';
import type { PassDecision } from '../scheduling/decide.js';
import type { PreemptionRule } from '../scheduling/preemption.js';
import type { QueueState } from '../scheduling/queue-state.js';
import type { SecretSource } from '../secrets/source.js';
import type { JobRecord, Store } from '../store/store.js';
import type { EngineWatch } from './engine-watch.js';
import type { ImagePuller } from './images.js';
import { type Interruption, JobRun, type RunEnd } from './job-run.js';
import type { NodeRuns } from './node-runs.js';
import type { NodeSeat } from './node-seat.js';
import type { Passes } from './planner.js';
import { type ReconcileReport, reconcile, releaseOrphanGpus } from './reconcile.js';

/** Pause before the queue is looked at again after another node won a claim. */
const CLAIM_RETRY_MS = 100;
/** The most jobs taken and not ended read back at once (far more than a fleet runs). */
const ACTIVE_READ_MAX = 100_000;
/** The longest a shutdown waits for runs still launching (an image pull, say); those jobs are taken again at the next start. */
const SHUTDOWN_LAUNCH_WAIT_MS = 5000;
/** Pause before reading the queue again when the store could not answer. */
const RELOAD_RETRY_MS = 1000;
/**
 * How often a node converges on what the store says it should run, at most:
 * a third of the lease, so a cancel or claim whose notification was lost is
 * honoured well within one lease; never more often than every second.
 */
const convergeEveryMs = (leaseSeconds: number) => Math.min(10_000, Math.max(1000, (leaseSeconds * 1000) / 3));

export interface SchedulerDeps {
  config: Config;
  seat: NodeSeat;
  runtime: ContainerRuntime;
  store: Store;
  jobs: JobService;
  events: JobEventHub;
  queue: QueueState;
  /** The runs of this node, which the scheduler launches and adopts. */
  runs: NodeRuns;
  /** What each pass decides from, and the decision. */
  planner: Passes;
  gpus: GpuAllocator;
  engine: EngineWatch;
  images: ImagePuller;
  secrets: SecretSource;
  log: Logger;
  /** Told how long each scheduling pass took (seconds). */
  onPass?: (seconds: number) => void;
  /** Told of each job this node preempts, by the rule that allowed it. */
  onPreempt?: (rule: PreemptionRule) => void;
}

/**
 * Applies this node's scheduling passes: each pass asks the planner what to
 * do (a pure decision on a snapshot), then claims each job it chose in the
 * store (of nodes claiming one job, one gets it) with the GPUs chosen for
 * it, and hands the claimed ones to the node's runs; it fails jobs a node
 * alone can never run, preempts what the decision names, and records why
 * the rest wait. Passes never overlap. GPUs held for a claim that is refused
 * or fails are released at once. While the container engine is unreachable,
 * the node is drained or it holds no lease, no job is started.
 */
export class Scheduler {
  private readonly unsubscribe: (() => void)[] = [];
  private kickPending = false;
  private scheduling = false;
  private again = false;
  private stopped = false;
  /** Set once the start-up reconcile has run (it waits for the engine if need be). */
  private reconciled: ReconcileReport | null = null;
  /** Whether the next pass converges on the store first (see reconcile.ts). */
  private convergeDue = false;
  private convergeTimer: NodeJS.Timeout | null = null;
  /** Unknown labelled containers already reported. */
  private readonly reported = new Set<string>();

  constructor(private readonly d: SchedulerDeps) {
    d.engine.onBack(() => void this.afterEngineBack());
    d.queue.onReady(() => this.kick());
    d.runs.onEnded(() => this.kick());
    this.unsubscribe.push(
      d.events.onQueueChanged(() => d.planner.followsQueue && this.kick()),
      d.events.onCancelRequested((id) => d.runs.requestCancel(id)),
    );
  }

  /**
   * Reconciles the store with the engine's containers (re-adopting the
   * jobs that were running), then starts taking jobs from the queue. When
   * the engine is unreachable, both wait until it answers.
   */
  async start(): Promise<ReconcileReport | null> {
    try {
      this.reconciled = await this.reconcile();
      this.d.log.info({ gpus: this.d.gpus.devices.length, ...this.reconciled }, 'reconciled with the container engine');
      this.d.planner.markReady();
      await this.reloadQueue();
    } catch (err) {
      this.d.engine.lost((err as Error).message);
    }
    if (this.convergeTimer === null && !this.stopped) {
      this.convergeTimer = setInterval(() => {
        this.convergeDue = true;
        this.kick();
      }, convergeEveryMs(this.d.config.node.leaseSeconds));
      this.convergeTimer.unref();
    }
    this.kick();
    return this.reconciled;
  }

  private reconcile(): Promise<ReconcileReport> {
    return reconcile({
      node: this.d.seat.name,
      epoch: this.d.seat.epoch(),
      runtime: this.d.runtime,
      store: this.d.store,
      jobs: this.d.jobs,
      keepContainers: this.d.config.logs.keepContainers,
      log: this.d.log,
      runs: this.d.runs,
      reported: this.reported,
      adopt: (record, container) => this.adopt(record, container),
    });
  }

  /**
   * The periodic reconcile, between passes: the store's word on this node's
   * jobs (claims, cancels, fences) against what its engine and its runs
   * hold; then GPUs held by no run and by no running container are
   * released, so an allocation never outlives what uses it. A store or
   * engine that cannot answer is asked again next period.
   */
  private async converge(): Promise<void> {
    try {
      const report = await this.reconcile();
      const changed = Object.entries(report).filter(([key, ids]) => ids.length > 0 && key !== 'unknownContainers');
      if (changed.length > 0) this.d.log.info(Object.fromEntries(changed), 'converged with the store');
    } catch (err) {
      this.d.log.warn({ err }, 'could not converge with the store; trying again next period');
    }
    const { gpus, runs, runtime, log } = this.d;
    await releaseOrphanGpus({ gpus, runs, runtime, log }).catch((err) =>
      log.warn({ err }, 'could not check the containers of GPUs held by no run'),
    );
  }

  /**
   * Reads the whole queue from the store again, and the GPU time fair share
   * still counts: at start, and after changes may have been missed. A store
   * that cannot answer is asked again shortly.
   */
  async reloadQueue(): Promise<void> {
    try {
      const now = Date.now();
      const horizon = this.d.queue.fairShare.horizonMs;
      const [queued, active, recent] = await Promise.all([
        this.d.store.jobs.queued(),
        this.d.store.jobs.list({ states: ['pulling', 'starting', 'running'], limit: ACTIVE_READ_MAX }),
        horizon > 0 ? this.d.store.jobs.overlapping(new Date(now - horizon).toISOString(), new Date(now).toISOString()) : [],
      ]);
      this.d.queue.reset(queued, active, recent);
      this.convergeDue = true;
    } catch (err) {
      this.d.log.warn({ err }, 'could not read the queue; trying again');
      if (!this.stopped) setTimeout(() => void this.reloadQueue(), RELOAD_RETRY_MS).unref();
      return;
    }
    this.kick();
  }

  kick(): void {
    if (this.kickPending || this.stopped) return;
    this.kickPending = true;
    setImmediate(() => {
      this.kickPending = false;
      void this.schedule();
    });
  }

  /**
   * Stops driving jobs without touching their containers: they keep running
   * and the next start re-attaches to them. Resolves once no run of this
   * node will create or start a container (see NodeRuns.detachAll), so the
   * store may close after it.
   */
  async shutdown(): Promise<void> {
    this.stopped = true;
    if (this.convergeTimer) clearInterval(this.convergeTimer);
    this.d.engine.stop();
    for (const off of this.unsubscribe) off();
    await this.d.runs.detachAll(SHUTDOWN_LAUNCH_WAIT_MS);
  }

  private async afterEngineBack(): Promise<void> {
    if (this.reconciled === null) await this.start();
    else this.kick();
  }

  /** One pass over the queue; passes never overlap (a kick during one runs another after it). */
  private async schedule(): Promise<void> {
    if (this.stopped) return;
    if (this.scheduling) {
      this.again = true;
      return;
    }
    this.scheduling = true;
    try {
      if (this.convergeDue && this.reconciled !== null) {
        this.convergeDue = false;
        await this.converge();
      }
      const started = performance.now();
      await this.apply(await this.d.planner.decide());
      await this.d.planner.applied?.();
      this.d.onPass?.((performance.now() - started) / 1000);
    } catch (err) {
      this.d.log.error({ err }, 'scheduling pass failed');
    } finally {
      this.scheduling = false;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    }
  }

  private async apply(decision: PassDecision): Promise<void> {
    const { queue, jobs, seat } = this.d;
    for (const { id, reason } of decision.fail) {
      await jobs.transition(id, 'failed', { reason, finishedAt: new Date().toISOString() });
    }
    const epoch = seat.epoch();
    let lostClaims = 0;
    if (decision.outcome.node === null && epoch !== null) {
      for (const { record, alloc } of decision.start) {
        if (!(await this.claimAndLaunch(record, alloc, epoch))) lostClaims++;
      }
      // A pass whose starts did not all apply saw GPUs as taken that are
      // free: it preempts nothing, and the next pass decides again.
      if (lostClaims === 0 && decision.preempt !== null) await this.preempt(decision.preempt);
    }
    queue.setPass(decision.outcome);
    // What another node took leaves GPUs and slots that later jobs may use:
    // look again shortly (not at once, so that a seat lost meanwhile cannot spin).
    if (lostClaims > 0) setTimeout(() => this.kick(), CLAIM_RETRY_MS).unref();
  }

  /**
   * Claims the job for this node with the GPUs the pass chose, and launches
   * it. False when another node took it, this node lost its seat, or the
   * claim failed: its GPUs are free again then.
   */
  private async claimAndLaunch(record: JobRecord, alloc: Allocation | null, epoch: number): Promise<boolean> {
    const { gpus, store, seat, queue } = this.d;
    if (alloc !== null) gpus.restore(record.id, alloc);
    let claimed: JobRecord | undefined;
    try {
      claimed = await store.jobs.claim(record.id, { name: seat.name, epoch }, this.d.planner.claimFence(record.id));
    } catch (err) {
      this.d.log.warn({ err, jobId: record.id }, 'could not claim a job; it stays queued');
    }
    if (!claimed) {
      gpus.release(record.id);
      return false;
    }
    queue.observe(claimed);
    this.launch(claimed, (run) => run.fresh(alloc));
    return true;
  }

  private async preempt({ waiter, victims }: NonNullable<PassDecision['preempt']>): Promise<void> {
    for (const v of victims) {
      this.d.log.info({ jobId: v.jobId, for: waiter, rule: v.rule }, v.reason);
      this.d.onPreempt?.(v.rule);
    }
    await this.d.runs.preempt(waiter, victims);
  }

  /** What this node would do with the job were it submitted now (a dry run); nothing is allocated, claimed or stored. */
  preview(job: JobRecord): WaitInfo {
    return this.d.planner.preview(job);
  }

  /**
   * After this node learnt it lost its lease (it was paused or cut off for
   * longer than the lease, and the fleet settled its jobs): every run whose
   * job is no longer this node's, for this attempt, is abandoned, its
   * container killed. Resolves once they are.
   */
  async abandonSettled(): Promise<void> {
    const { store, seat } = this.d;
    await this.d.runs.abandonWhere(async (jobId, attempt) => {
      const record = await store.jobs.get(jobId, { fresh: true });
      if (!record) return 'the job is gone';
      const ours = !isTerminal(record.state) && record.node === seat.name && record.attempt === attempt;
      return ours ? null : `the fleet settled it: now ${record.state}`;
    });
  }

  /**
   * Stops a job this node runs for a cause of Gantry's (a faulty GPU, a
   * policy, a preemption): see JobRun.interrupt. False when the node does
   * not run it, or it was already being stopped.
   */
  async interrupt(jobId: string, why: Interruption): Promise<boolean> {
    return this.d.runs.interrupt(jobId, why);
  }

  /** Adds a `[gantry]` line to the log of a job this node runs (a GPU policy's warning); nothing if it runs elsewhere. */
  note(jobId: string, line: string): void {
    this.d.runs.note(jobId, line);
  }

  /** The jobs this node runs now. */
  get running(): number {
    return this.d.runs.size;
  }

  private adopt(record: JobRecord, container: ManagedContainer): void {
    if (record.gpus.length > 0)
      this.d.gpus.restore(record.id, { uuids: [...record.gpus], memoryMiB: record.gpuMemoryMiB } satisfies Allocation);
    this.launch(record, (run) => run.adopt(container));
  }

  private launch(record: JobRecord, drive: (run: JobRun) => Promise<RunEnd>): void {
    // A node shutting down launches nothing: a job it claimed meanwhile is taken again at its next start (reconcile.ts).
    if (this.stopped) return;
    const run = new JobRun(
      {
        config: this.d.config,
        runtime: this.d.runtime,
        jobs: this.d.jobs,
        logs: this.d.store.logs,
        images: this.d.images,
        secrets: this.d.secrets,
        engine: this.d.engine,
        devices: this.d.gpus.devices,
        log: this.d.log,
        onAppend: (jobId, seq) => this.d.events.publishAppend(jobId, seq),
        stopped: () => this.stopped,
      },
      record,
    );
    this.d.runs.launch(run, record, drive);
  }
}
