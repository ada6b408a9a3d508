import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Allocation, GpuAllocator } from '../gpu/allocator.js';
import { planQueue, type QueueEntry } from '../gpu/queue.js';
import type { JobEventHub } from '../jobs/events.js';
import { misfit, type PlacementTarget } from '../jobs/placement.js';
import { choosePreemption, type PreemptionRule } from '../jobs/preemption.js';
import type { QueueState } from '../jobs/queue-state.js';
import { type Quotas, TeamLimits } from '../jobs/quotas.js';
import { runSettings } from '../jobs/run-settings.js';
import type { JobService } from '../jobs/service.js';
import type { SpecFieldError } from '../model/errors.js';
import type { WaitInfo } from '../model/queue.js';
import { isTerminal } from '../model/states.js';
import type { ContainerRuntime, ManagedContainer } from '../runtime/runtime.js';
import type { SecretSource } from '../secrets/source.js';
import type { JobRecord, Store } from '../store/store.js';
import { EngineWatch } from './engine-watch.js';
import type { ImagePuller } from './images.js';
import { type Interruption, JobRun, type RunEnd } from './job-run.js';
import type { NodeSeat } from './node-seat.js';
import { type ReconcileReport, reconcile } from './reconcile.js';
import { clearSecretFiles } from './secret-delivery.js';

/** Pause before the queue is looked at again after another node won a claim. */
const CLAIM_RETRY_MS = 100;
/** The most jobs taken and not ended read back at once (far more than a fleet runs). */
const ACTIVE_READ_MAX = 100_000;
/** Pause before reading the queue again when the store could not answer. */
const RELOAD_RETRY_MS = 1000;

export interface SchedulerDeps {
  config: Config;
  seat: NodeSeat;
  runtime: ContainerRuntime;
  store: Store;
  jobs: JobService;
  events: JobEventHub;
  queue: QueueState;
  gpus: GpuAllocator;
  images: ImagePuller;
  secrets: SecretSource;
  /** The teams' limits (GANTRY_QUOTAS_FILE). */
  quotas: Quotas;
  log: Logger;
  /** Told how long each scheduling pass took (seconds). */
  onPass?: (seconds: number) => void;
  /** Told of each job this node preempts, by the rule that allowed it. */
  onPreempt?: (rule: PreemptionRule) => void;
}

/**
 * Runs this node's share of the queue: picks the queued jobs the node can
 * run, in the fleet-wide order (priority, then FIFO), gives them GPUs and a
 * run slot, claims each in the store (of nodes claiming one job, one gets
 * it) and hands it to a JobRun that drives it to its end. GPUs are
 * released exactly once per run, in one finally block, whatever path ended
 * it. While the container engine is unreachable, the node is drained or it
 * holds no lease, no job is started; queued jobs say why they wait.
 */
export class Scheduler {
  private readonly active = new Map<string, JobRun>();
  /** The GPU jobs this node runs, by when they end at the latest (their deadline, or launch plus timeout). */
  private readonly endsBy = new Map<string, number>();
  /** The jobs this node runs, as launched, and when (ms). */
  private readonly launched = new Map<string, { record: JobRecord; at: number }>();
  /** Jobs waiting for GPUs, each with the jobs preempted for it that still run. */
  private readonly preempting = new Map<string, Set<string>>();
  /** Jobs being stopped by a preemption. */
  private readonly stopping = new Set<string>();
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
    const unfit = new WeakMap<JobRecord, SpecFieldError | null>();
    d.queue.setOnReady(() => this.kick());
    d.queue.setMisfit((r) => {
      let why = unfit.get(r);
      if (why === undefined) unfit.set(r, (why = misfit(r.spec, this.target)));
      return why;
    });
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
    await clearSecretFiles(this.d.config.secrets.runDir, this.d.seat.name).catch((err) =>
      this.d.log.error({ err }, 'could not clear secret files left by an earlier run'),
    );
    try {
      this.reconciled = await reconcile({
        node: this.d.seat.name,
        runtime: this.d.runtime,
        store: this.d.store,
        jobs: this.d.jobs,
        keepContainers: this.d.config.logs.keepContainers,
        log: this.d.log,
        adopt: (record, container) => this.adopt(record, container),
      });
      this.d.log.info({ gpus: this.d.gpus.devices.length, ...this.reconciled }, 'reconciled with the container engine');
      await this.reloadQueue();
    } catch (err) {
      this.engine.lost((err as Error).message);
    }
    this.kick();
    return this.reconciled;
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
    const started = performance.now();
    try {
      await this.plan();
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

  private async plan(): Promise<void> {
    const { gpus, config, queue, jobs, seat } = this.d;
    const epoch = seat.epoch();
    const why = this.notTaking(epoch);
    if (why !== null) {
      queue.setPass({ node: why, decided: new Map(), beyond: { any: null, gpu: null } });
      return;
    }
    // Alone, a job this host can never run never runs: it fails now. In a
    // fleet another node may run it, and it waits (QueueState says why).
    if (!seat.shared) {
      for (const [id, unfit] of [...queue.unrunnable()]) {
        await jobs.transition(id, 'failed', {
          reason: `its spec can no longer be met on this host: ${unfit.path}: ${unfit.message}`,
          finishedAt: new Date().toISOString(),
        });
      }
    }
    if (epoch === null) return;
    const now = Date.now();
    const limits = this.limits();
    const plan = planQueue({
      queue: (skip) => mapped(queue.runnableInOrder(skip), (r) => (this.active.has(r.id) ? null : this.entry(r))),
      limits,
      gpus,
      freeSlots: config.maxRunning - this.active.size,
      maxRunning: config.maxRunning,
      running: [...this.endsBy].map(([jobId, endsBy]) => ({ jobId, endsBy })),
      now,
    });
    const waiting = new Map<string, WaitInfo>();
    let lostClaims = 0;
    for (const decision of plan.decisions) {
      if (decision.action === 'wait') {
        waiting.set(decision.id, decision.wait);
        continue;
      }
      const record = queue.all.get(decision.id)!;
      const claimed = await this.d.store.jobs.claim(record.id, { name: seat.name, epoch });
      if (claimed) {
        queue.observe(claimed);
        this.launch(claimed, (run) => run.fresh(decision.alloc));
      } else {
        // Another node took it (or this node lost its seat): its GPUs go back.
        gpus.release(record.id);
        lostClaims++;
      }
    }
    await this.preemptFor(waiting);
    queue.setPass({ node: null, decided: waiting, beyond: { ...plan.beyond, owners: closedQueues(limits, queue.owners()) } });
    // What another node took leaves GPUs and slots that later jobs may use:
    // look again shortly (not at once, so that a seat lost meanwhile cannot spin).
    if (lostClaims > 0) setTimeout(() => this.kick(), CLAIM_RETRY_MS).unref();
  }

  /**
   * Preemption, for the job holding the GPU reservation (the first that
   * waits for GPUs; `waiting` is in pass order): when preemptible jobs
   * this node runs may give way to it by a rule (jobs/preemption.ts), they
   * are stopped, told first, and go back to the queue; the job then takes
   * their GPUs as the reservation's holder. Nothing more is preempted for
   * it while those still stop. Its wait says so.
   */
  private async preemptFor(waiting: Map<string, WaitInfo>): Promise<void> {
    const holder = [...waiting].find(([, w]) => w.code === 'gpus');
    if (holder === undefined) return;
    const [id, wait] = holder;
    const explain = (victims: Iterable<string>) =>
      waiting.set(id, { ...wait, text: `${wait.text}; preempting job ${[...victims].join(', job ')} for it` });
    const pending = this.preempting.get(id);
    if (pending !== undefined) {
      explain(pending);
      return;
    }
    const record = this.d.queue.all.get(id);
    if (record?.spec.gpus === undefined) return;
    const running = [...this.launched.values()].flatMap(({ record: r, at }) =>
      this.stopping.has(r.id)
        ? []
        : [
            {
              jobId: r.id,
              owner: r.owner,
              priority: r.priority,
              preemptible: r.spec.preemptible === true,
              startedAt: at,
              gpus: this.d.gpus.allocationOf(r.id)?.uuids.length ?? 0,
            },
          ],
    );
    const victims = choosePreemption({
      waiting: {
        jobId: id,
        owner: record.owner,
        priority: record.priority,
        gpus: record.spec.gpus,
        model: record.spec.placement?.gpuModel,
      },
      running,
      gpus: this.d.gpus,
      quotas: this.d.quotas,
      teamGpus: (team) => this.d.queue.activeOf(team.owners).gpus,
    });
    if (victims === null) return;
    this.preempting.set(id, new Set(victims.map((v) => v.jobId)));
    for (const v of victims) {
      this.stopping.add(v.jobId);
      this.d.log.info({ jobId: v.jobId, for: id, rule: v.rule }, v.reason);
      this.d.onPreempt?.(v.rule);
      await this.active.get(v.jobId)?.interrupt({ cause: 'preempted', reason: v.reason });
    }
    explain(victims.map((v) => v.jobId));
  }

  /**
   * What this node would do with the job were it submitted now (a dry run):
   * the same pass over the head of the queue, on a copy of the GPUs, with
   * the job in its place. Nothing is allocated, claimed or stored.
   */
  preview(job: JobRecord): WaitInfo {
    const { gpus, config, queue, seat } = this.d;
    const why = this.notTaking(seat.epoch());
    if (why !== null) return why;
    const unfit = misfit(job.spec, this.target);
    if (unfit !== null) {
      return { code: 'not_here', text: `node "${seat.name}" cannot run it (${unfit.path}: ${unfit.message})`, estimatedStartAt: null };
    }
    const now = Date.now();
    const entry = (r: JobRecord) => this.entry(r);
    const active = this.active;
    // The jobs ahead of it (a higher or equal priority: they came first), then it, unless its queue is closed.
    const upTo = function* (skip: (owner: string, gpu: boolean) => boolean) {
      for (const r of queue.runnableInOrder(skip)) {
        if (r.priority < job.priority) break;
        if (!active.has(r.id)) yield entry(r);
      }
      if (!skip(job.owner, Boolean(job.spec.gpus))) yield entry(job);
    };
    const limits = this.limits();
    const plan = planQueue({
      queue: upTo,
      limits,
      gpus: gpus.clone(),
      freeSlots: config.maxRunning - this.active.size,
      maxRunning: config.maxRunning,
      running: [...this.endsBy].map(([jobId, endsBy]) => ({ jobId, endsBy })),
      now,
    });
    const mine = plan.decisions.find((d) => d.id === job.id);
    if (mine?.action === 'start') {
      return { code: 'pending', text: `would start at once on node "${seat.name}"`, estimatedStartAt: new Date(now).toISOString() };
    }
    if (mine?.action === 'wait') return mine.wait;
    const owner = closedQueues(limits, [job.owner]).get(job.owner);
    const gpu = Boolean(job.spec.gpus);
    return (
      (gpu ? owner?.gpu : null) ??
      owner?.any ??
      (gpu ? plan.beyond.gpu : null) ??
      plan.beyond.any ?? { code: 'pending', text: 'queued', estimatedStartAt: null }
    );
  }

  /** A queued job as the queue policy sees it. */
  private entry(r: JobRecord): QueueEntry {
    return {
      id: r.id,
      owner: r.owner,
      gpus: r.spec.gpus,
      model: r.spec.placement?.gpuModel,
      timeoutSeconds: runSettings(r).timeoutSeconds,
    };
  }

  /** The teams' limits for one pass, or null when no team has any. */
  private limits(): TeamLimits | null {
    return this.d.quotas.teams().length > 0 ? new TeamLimits(this.d.quotas, this.d.queue) : null;
  }

  /** Why this node takes no job now, or null when it does. */
  private notTaking(epoch: number | null): WaitInfo | null {
    const unreachable = this.engine.unreachable;
    const wait = (code: string, text: string): WaitInfo => ({ code, text, estimatedStartAt: null });
    if (unreachable !== null || this.reconciled === null) {
      return wait('engine_unreachable', `waiting for the container engine, which is unreachable: ${unreachable ?? 'not reconciled yet'}`);
    }
    if (epoch === null) return wait('no_lease', `node "${this.d.seat.name}" holds no lease in the fleet yet`);
    if (this.d.seat.drained()) return wait('node_drained', `node "${this.d.seat.name}" is drained: it starts no new job`);
    return null;
  }

  /** This node as placement sees it. */
  private get target(): PlacementTarget {
    const { gpus, seat } = this.d;
    return {
      name: seat.name,
      labels: seat.labels,
      impossibleGpus: (req, model) => gpus.impossible(req, model),
      hasModel: (model) => gpus.devices.some((d) => d.name.toLowerCase().includes(model.toLowerCase())),
    };
  }

  /**
   * After this node learnt it lost its lease (it was paused or cut off for
   * longer than the lease, and the fleet settled its jobs): every run whose
   * job is no longer this node's, for this attempt, is abandoned, its
   * container killed. Resolves once they are.
   */
  async abandonSettled(): Promise<void> {
    const { store, seat } = this.d;
    await Promise.all(
      [...this.active.values()].map(async (run) => {
        const record = await store.jobs.get(run.id, { fresh: true });
        const ours = record && !isTerminal(record.state) && record.node === seat.name && record.attempt === run.fence.attempt;
        if (!ours) await run.abandon(record ? `the fleet settled it: now ${record.state}` : 'the job is gone');
      }),
    );
  }

  /**
   * Stops a job this node runs for a cause of Gantry's (a faulty GPU, a
   * policy, a preemption): see JobRun.interrupt. False when the node does
   * not run it, or it was already being stopped.
   */
  async interrupt(jobId: string, why: Interruption): Promise<boolean> {
    return (await this.active.get(jobId)?.interrupt(why)) ?? false;
  }

  /** Adds a `[gantry]` line to the log of a job this node runs (a GPU policy's warning); nothing if it runs elsewhere. */
  note(jobId: string, line: string): void {
    this.active.get(jobId)?.note(line);
  }

  /** The jobs this node runs now. */
  get running(): number {
    return this.active.size;
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
        secrets: this.d.secrets,
        engine: this.engine,
        devices: this.d.gpus.devices,
        log: this.d.log,
        onAppend: (jobId, seq) => this.d.events.publishAppend(jobId, seq),
        stopped: () => this.stopped,
      },
      record,
    );
    this.active.set(record.id, run);
    this.launched.set(record.id, { record, at: record.startedAt ? Date.parse(record.startedAt) : Date.now() });
    if (record.gpus.length > 0 || record.spec.gpus) {
      // When its GPUs are free at the latest, for the reservation of a job that waits for them.
      const timeout = runSettings(record).timeoutSeconds;
      this.endsBy.set(record.id, record.deadlineAt ? Date.parse(record.deadlineAt) : Date.now() + timeout * 1000);
    }
    queue.markLaunched(record.id);
    void drive(run)
      .catch((err: unknown) => this.d.log.error({ err, jobId: record.id }, 'job run failed unexpectedly'))
      .finally(() => {
        this.active.delete(record.id);
        this.endsBy.delete(record.id);
        this.launched.delete(record.id);
        this.stopping.delete(record.id);
        for (const [waiter, victims] of this.preempting) {
          victims.delete(record.id);
          if (victims.size === 0) this.preempting.delete(waiter);
        }
        queue.markDone(record.id);
        if (!this.stopped) {
          // Exactly one release per allocation, whatever path ended the job.
          this.d.gpus.release(record.id);
          this.kick();
        }
      });
  }
}

/** The iterable's items through `fn`, lazily, leaving out those it maps to null. */
function* mapped<T, U>(items: Iterable<T>, fn: (item: T) => U | null): IterableIterator<U> {
  for (const item of items) {
    const out = fn(item);
    if (out !== null) yield out;
  }
}

/** Why each owner's queues that the pass's limits closed wait, by owner. */
function closedQueues(limits: TeamLimits | null, owners: Iterable<string>): Map<string, { any: WaitInfo | null; gpu: WaitInfo | null }> {
  const closed = new Map<string, { any: WaitInfo | null; gpu: WaitInfo | null }>();
  if (limits === null) return closed;
  for (const owner of owners) {
    const any = limits.closed(owner, false);
    const gpu = limits.closed(owner, true);
    if (any || gpu) closed.set(owner, { any, gpu: gpu ?? any });
  }
  return closed;
}
