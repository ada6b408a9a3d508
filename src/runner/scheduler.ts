import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Allocation, GpuAllocator } from '../gpu/allocator.js';
import { planQueue } from '../gpu/queue.js';
import type { JobEventHub } from '../jobs/events.js';
import type { QueueState } from '../jobs/queue-state.js';
import type { JobService } from '../jobs/service.js';
import type { ContainerRuntime, ManagedContainer } from '../runtime/runtime.js';
import type { JobRecord, Store } from '../store/store.js';
import { EngineWatch } from './engine-watch.js';
import type { ImagePuller } from './images.js';
import { JobRun, type RunEnd } from './job-run.js';
import { type ReconcileReport, reconcile } from './reconcile.js';

export interface SchedulerDeps {
  config: Config;
  runtime: ContainerRuntime;
  store: Store;
  jobs: JobService;
  events: JobEventHub;
  queue: QueueState;
  gpus: GpuAllocator;
  images: ImagePuller;
  log: Logger;
}

/**
 * Runs the queue: picks queued jobs in order (priority, then FIFO), gives
 * them GPUs and a run slot, and hands each to a JobRun that drives it to
 * its end. GPUs are released exactly once per run, in one finally block,
 * whatever path ended it. While the container engine is unreachable no job
 * is started; queued jobs say why they wait.
 */
export class Scheduler {
  private readonly active = new Map<string, JobRun>();
  private readonly engine: EngineWatch;
  private readonly unsubscribe: (() => void)[] = [];
  private kickPending = false;
  private scheduling = false;
  private again = false;
  private stopped = false;
  /** Set once the start-up reconcile has run (it waits for the engine if need be). */
  private reconciled: ReconcileReport | null = null;

  constructor(private readonly d: SchedulerDeps) {
    this.engine = new EngineWatch(d.runtime, d.log, () => void this.afterEngineBack());
    this.unsubscribe.push(
      d.events.onQueueChanged(() => this.kick()),
      d.events.onCancelRequested((id) => this.active.get(id)?.requestCancel()),
    );
  }

  /**
   * Reconciles the store with the engine's containers (re-adopting the
   * jobs that were running), then starts taking jobs from the queue. When
   * the engine is unreachable, both wait until it answers.
   */
  async start(): Promise<ReconcileReport | null> {
    try {
      this.reconciled = await reconcile({
        runtime: this.d.runtime,
        store: this.d.store,
        jobs: this.d.jobs,
        keepContainers: this.d.config.logs.keepContainers,
        log: this.d.log,
        adopt: (record, container) => this.adopt(record, container),
      });
      this.d.log.info({ gpus: this.d.gpus.devices.length, ...this.reconciled }, 'reconciled with the container engine');
    } catch (err) {
      this.engine.lost((err as Error).message);
    }
    this.kick();
    return this.reconciled;
  }

  kick(): void {
    if (this.kickPending || this.stopped) return;
    this.kickPending = true;
    setImmediate(() => {
      this.kickPending = false;
      void this.schedule();
    });
  }

  /** Stops driving jobs without touching their containers: they keep running and the next start re-attaches to them. */
  shutdown(): void {
    this.stopped = true;
    this.engine.stop();
    for (const off of this.unsubscribe) off();
    for (const run of this.active.values()) run.detach();
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
      await this.plan();
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

  private async plan(): Promise<void> {
    const { gpus, config, queue, jobs } = this.d;
    // Launched but still `queued` in the store until its first step is stored.
    const records = (await this.d.store.jobs.queued()).filter((r) => !this.active.has(r.id));
    const unreachable = this.engine.unreachable;
    if (unreachable !== null || this.reconciled === null) {
      const why = `waiting for the container engine, which is unreachable: ${unreachable ?? 'not reconciled yet'}`;
      queue.setWaitReasons(new Map(records.map((r) => [r.id, why])));
      return;
    }
    const plan = planQueue(
      records.map((r) => ({ id: r.id, gpus: r.spec.gpus })),
      gpus,
      config.maxRunning - this.active.size,
      config.maxRunning,
    );
    const waiting = new Map<string, string>();
    for (const [i, decision] of plan.entries()) {
      const record = records[i]!;
      if (decision.action === 'wait') waiting.set(record.id, decision.reason);
      else if (decision.action === 'start') this.launch(record, (run) => run.fresh(decision.alloc));
    }
    queue.setWaitReasons(waiting);
    for (const [i, decision] of plan.entries()) {
      if (decision.action === 'refuse')
        await jobs.transition(records[i]!.id, 'failed', { reason: decision.reason, finishedAt: new Date().toISOString() });
    }
  }

  private adopt(record: JobRecord, container: ManagedContainer): void {
    if (record.gpus.length > 0)
      this.d.gpus.restore(record.id, { uuids: [...record.gpus], memoryMiB: record.gpuMemoryMiB } satisfies Allocation);
    this.launch(record, (run) => run.adopt(container));
  }

  private launch(record: JobRecord, drive: (run: JobRun) => Promise<RunEnd>): void {
    const { queue } = this.d;
    const run = new JobRun(
      {
        config: this.d.config,
        runtime: this.d.runtime,
        jobs: this.d.jobs,
        logs: this.d.store.logs,
        images: this.d.images,
        engine: this.engine,
        devices: this.d.gpus.devices,
        log: this.d.log,
        onAppend: (jobId, seq) => this.d.events.publishAppend(jobId, seq),
        stopped: () => this.stopped,
      },
      record,
    );
    this.active.set(record.id, run);
    queue.markLaunched(record.id);
    void drive(run)
      .catch((err: unknown) => this.d.log.error({ err, jobId: record.id }, 'job run failed unexpectedly'))
      .finally(() => {
        this.active.delete(record.id);
        queue.markDone(record.id);
        if (!this.stopped) {
          // Exactly one release per allocation, whatever path ended the job.
          this.d.gpus.release(record.id);
          this.kick();
        }
      });
  }
}
