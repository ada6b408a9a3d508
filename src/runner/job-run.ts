import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Allocation } from '../gpu/allocator.js';
import { explainGpuError } from '../gpu/inject.js';
import type { GpuDevice } from '../gpu/inventory.js';
import type { JobService } from '../jobs/service.js';
import type { LogCapture } from '../logs/capture.js';
import { FencedError } from '../model/errors.js';
import type { JobSpec } from '../model/job.js';
import type { RunSettings } from '../model/run-settings.js';
import { type ContainerRuntime, type ContainerStatus, isUnreachable, type ManagedContainer } from '../runtime/runtime.js';
import type { SecretSource } from '../secrets/source.js';
import { type Fence, type JobRecord, type LogStore, runSettings } from '../store/store.js';
import type { EngineWatch } from './engine-watch.js';
import { JobFailure } from './hooks/hook.js';
import { RunHooks } from './hooks/run-hooks.js';
import { ImageError, type ImagePuller } from './images.js';
import { JobContainer } from './job-container.js';
import { outcomeBeforeStart, outcomeOf } from './outcome.js';
import { prepareContainer } from './run-prepare.js';
import { type Interruption, RunState } from './run-state.js';
import { type AttemptEnd, RunWriter } from './run-writer.js';

export type { Interruption } from './run-state.js';

export interface JobRunDeps {
  config: Config;
  runtime: ContainerRuntime;
  jobs: JobService;
  logs: LogStore;
  images: ImagePuller;
  secrets: SecretSource;
  engine: EngineWatch;
  devices: readonly GpuDevice[];
  log: Logger;
  /** New log lines were stored for the job (live followers wake up). */
  onAppend: (jobId: string, lastSeq: number) => void;
  /** Whether Gantry is shutting down: then jobs are left running, not ended. */
  stopped: () => boolean;
}

/**
 * How a run ended, for the scheduler. `requeued`: the job is back in the
 * queue, the same attempt (the engine went away before its container
 * existed) or the next (a retry rule). `fenced`: the job was no longer this
 * run's (the fleet settled it while this node was cut off); its container
 * was killed and nothing more was written about it.
 */
export type RunEnd = 'ended' | 'requeued' | 'detached' | 'fenced';

/**
 * Drives one job through the container runtime to its end: from the queue
 * (policy, pull, create, attach, start) or, after a restart, from the
 * container it left behind; then its output is captured until the
 * container stops and the outcome is recorded. The engine going away is
 * never the job's failure: before its container exists the job goes back
 * to the queue; after, the run waits for the engine and carries on.
 */
export class JobRun {
  private readonly state: RunState;
  private readonly container: JobContainer;
  /** The run's side concerns (secrets, preemption notice, result file), told of each point of its life. */
  private readonly hooks: RunHooks;
  /** What the run writes about its job (steps, output, end), with its fence. */
  private readonly writer: RunWriter;
  /** The capture of the container's output now, for Gantry's own lines (note). */
  private capture: LogCapture | null = null;
  readonly spec: JobSpec;
  /** How the job runs, as resolved at its submit. */
  readonly settings: RunSettings;
  /** This run's claim on the job: every write it makes about the job carries it. */
  readonly fence: Fence;
  /** Settles once the run creates and starts nothing more: it waits for its container's exit, or its drive is over. */
  readonly launched: Promise<void>;
  private markLaunched!: () => void;

  constructor(
    private readonly d: JobRunDeps,
    private readonly record: JobRecord,
  ) {
    this.spec = record.spec;
    this.settings = runSettings(record);
    if (record.node === null) throw new Error(`job ${record.id} is run without being claimed by a node`);
    // The epoch stamped by this process's claim, or by its adoption of the run (reconcile.ts).
    this.fence = { node: record.node, attempt: record.attempt, epoch: record.nodeEpoch };
    const { runtime, log } = d;
    const container = { jobId: record.id, runtime, graceSeconds: this.settings.stopGraceSeconds, keep: d.config.logs.keepContainers, log };
    this.container = new JobContainer(container, record.containerId);
    this.state = new RunState({ hasContainer: record.containerId !== null, cancelRequested: record.cancelRequested });
    this.hooks = RunHooks.of(record, record.node, d);
    this.writer = new RunWriter(d, record, this.fence);
    this.launched = new Promise((resolve) => (this.markLaunched = resolve));
  }

  get id(): string {
    return this.record.id;
  }

  /** Stops the container (SIGTERM, grace, SIGKILL); the job then ends cancelled. */
  requestCancel(): void {
    this.state.requestCancel();
    this.container.stop();
  }

  /**
   * Stops the run for a cause of Gantry's (SIGTERM, grace, SIGKILL): the
   * attempt ends failed with that cause, and the retry rules decide what
   * follows (a preemption is always retried). The run's hooks are told
   * first (a preemptible job, in its notice file). A run already cancelled
   * or interrupted keeps its first reason; false then.
   */
  async interrupt(why: Interruption): Promise<boolean> {
    if (!this.state.interrupt(why)) return false;
    const now = Date.now();
    const killAt = new Date(now + this.settings.stopGraceSeconds * 1000).toISOString();
    await this.hooks.stop({ why, signalAt: new Date(now).toISOString(), killAt, hasContainer: this.state.hasContainer });
    this.capture?.note(`[gantry] stopping attempt ${this.fence.attempt} (${why.cause}): ${why.reason}; SIGTERM now, SIGKILL at ${killAt}`);
    this.container.stop();
    return true;
  }

  /** Adds a `[gantry]` line to the job's log, among its output, while its output is captured. */
  note(line: string): void {
    this.capture?.note(line);
  }

  /** Stops driving without touching the container: the next start re-attaches to it. */
  detach(): void {
    this.container.release();
  }

  /** The job is no longer this run's: its container is killed and removed, and nothing more is written. */
  async abandon(why: string): Promise<void> {
    if (!this.state.abandon()) return;
    this.d.log.warn(
      { jobId: this.id, attempt: this.fence.attempt, why },
      'the fleet settled this job while this node was cut off; killing its container',
    );
    this.container.release();
    await this.container.discard();
  }

  /** A job from the queue, with the GPUs it was given. */
  async fresh(alloc: Allocation | null): Promise<RunEnd> {
    return this.guard(async () => {
      const { record, fence, state, writer, hooks } = this;
      const prepared = await prepareContainer({ ...this.d, record, fence, state, writer, hooks }, alloc);
      if (prepared.kind === 'engine_away') {
        // Back to the queue: nothing of the job exists in the engine yet.
        this.d.engine.lost(prepared.error.message);
        await writer.requeue();
        return 'requeued';
      }
      if (prepared.kind === 'taken') return 'ended';
      if (prepared.kind === 'stopped') return this.end(outcomeBeforeStart(this.state.stop, prepared.when)!);
      this.container.id = prepared.containerId;
      this.state.advance('created');
      await this.writer.stored(() => this.d.jobs.patch(this.id, { containerId: prepared.containerId }, fence));
      return this.startAndFollow();
    });
  }

  /** A job whose container outlived a Gantry restart: capture resumes from the log driver. */
  async adopt(container: ManagedContainer): Promise<RunEnd> {
    return this.guard(async () => {
      this.container.id = container.id;
      this.state.advance(container.state === 'created' ? 'created' : 'started');
      // An interruption under way outlives a restart (a preemption, in its notice file).
      const interrupted = await this.hooks.adopted();
      if (interrupted) this.state.interrupt(interrupted);
      if (this.record.containerId !== container.id) {
        await this.writer.stored(() => this.d.jobs.patch(this.id, { containerId: container.id }, this.fence));
      }
      // Created, never started: it holds the name gantry-<id>, so no second one can exist; start it.
      if (container.state === 'created') return this.startAndFollow();
      const startedAt = new Date(container.created * 1000).toISOString();
      if (this.record.state === 'starting') await this.writer.step('running', { startedAt });
      const deadline = this.record.deadlineAt ? Date.parse(this.record.deadlineAt) : Number.POSITIVE_INFINITY;
      if (container.state === 'running') this.armTimeout(deadline - Date.now());
      if (this.state.cancelled || this.state.interruption) this.container.stop();
      return this.follow(await this.d.runtime.followLogs(container.id), deadline);
    });
  }

  /**
   * Ends the job failed on any error that is not the engine going away;
   * when it is, waits for the engine and picks the job up where it stands.
   */
  private async guard(body: () => Promise<RunEnd>): Promise<RunEnd> {
    try {
      return await body();
    } catch (err) {
      if (err instanceof FencedError || this.state.abandoned) {
        await this.abandon((err as Error).message);
        return 'fenced';
      }
      if (this.d.stopped()) return 'detached';
      if (isUnreachable(err) && this.state.hasContainer) {
        this.d.engine.lost((err as Error).message);
        await this.d.engine.whenUp();
        if (this.d.stopped()) return 'detached';
        return this.guard(() => this.resume());
      }
      const ours = err instanceof JobFailure || err instanceof ImageError;
      if (!ours) this.d.log.error({ err, jobId: this.id }, 'job runner failed');
      const reason = ours ? (err as Error).message : `internal error: ${(err as Error).message}`;
      return this.end({ state: 'failed', reason, cause: err instanceof ImageError ? 'image_pull' : null });
    } finally {
      this.markLaunched();
      this.container.disarm();
      await this.hooks.cleanup();
    }
  }

  /** After the engine was away while the job started: its container as the engine now has it decides. */
  private async resume(): Promise<RunEnd> {
    const container = (await this.d.runtime.listManaged()).find((c) => c.id === this.container.id);
    if (!container) throw new JobFailure('the container vanished while the container engine was away');
    if (container.state === 'created') return this.startAndFollow();
    const current = await this.writer.stored(() => this.d.jobs.current(this.id));
    const startedAt = current.startedAt ?? new Date(container.created * 1000).toISOString();
    const deadline = Date.parse(startedAt) + this.settings.timeoutSeconds * 1000;
    if (current.state === 'starting') await this.writer.step('running', { startedAt, deadlineAt: new Date(deadline).toISOString() });
    if (container.state === 'running') this.armTimeout(deadline - Date.now());
    return this.follow(await this.d.runtime.followLogs(container.id), deadline);
  }

  /** Attach first (no output is missed), then start, then follow to the end. */
  private async startAndFollow(): Promise<RunEnd> {
    // A node shutting down starts nothing: the next start adopts the created container and starts it then.
    if (this.d.stopped()) return 'detached';
    const id = this.container.id!;
    const stopped = outcomeBeforeStart(this.state.stop, 'before the container started');
    if (stopped) {
      await this.container.remove();
      return this.end(stopped);
    }
    await this.hooks.starting();
    const stream = await this.d.runtime.attach(id);
    const { attempt, node } = this.fence;
    const capture = await this.newCapture({
      newContainer: true,
      ...(attempt > 1 ? { banner: `[gantry] attempt ${attempt} of the job, on node "${node}"` } : {}),
    });
    const consumed = capture.consume(this.container.track(stream));
    try {
      await this.d.runtime.start(id);
    } catch (err) {
      await this.hooks.cleanup();
      stream.destroy();
      await consumed;
      if (isUnreachable(err)) {
        // The start is retried once the engine is back: the log stays open.
        await capture.detach();
        throw err;
      }
      await capture.finish();
      throw new JobFailure(`the container did not start: ${explainGpuError(this.d.config.gpus.driver, (err as Error).message)}`);
    }
    this.state.advance('started');
    await this.hooks.poststart();
    const startedAt = Date.now();
    const deadlineAt = new Date(startedAt + this.settings.timeoutSeconds * 1000).toISOString();
    await this.writer.step('running', { startedAt: new Date(startedAt).toISOString(), deadlineAt });
    this.armTimeout(this.settings.timeoutSeconds * 1000);
    return this.awaitExit(capture, consumed, Number.POSITIVE_INFINITY);
  }

  private async follow(stream: Readable, deadline: number): Promise<RunEnd> {
    const capture = await this.newCapture();
    return this.awaitExit(capture, capture.consume(this.container.track(stream)), deadline);
  }

  private async awaitExit(capture: LogCapture, consumed: Promise<void>, deadline: number): Promise<RunEnd> {
    this.markLaunched();
    const id = this.container.id!;
    let exit: ContainerStatus['exit'];
    for (;;) {
      try {
        exit = await this.d.runtime.wait(id);
        break;
      } catch (err) {
        if (!isUnreachable(err) || this.d.stopped()) throw err;
        // The engine went away under a running container: keep what was captured, wait for it, then see what became of it.
        this.d.engine.lost((err as Error).message);
        this.container.dropStream();
        await consumed;
        await capture.detach();
        await this.d.engine.whenUp();
        if (this.d.stopped()) return 'detached';
        const status = await this.d.runtime.inspect(id);
        if (!status) throw new JobFailure('the container vanished while the container engine was away');
        // A container that is still running outlived the engine (live-restore).
        if (!status.running) this.state.engineLost();
        if (status.running && this.state.stopRequested) this.container.stop();
        capture = await this.newCapture();
        consumed = capture.consume(this.container.track(await this.d.runtime.followLogs(id)));
      }
    }
    this.state.advance('exited');
    await consumed;
    if (this.d.stopped()) return 'detached';
    const signalledByOthers = this.state.stop === null && !exit.oomKilled && (exit.exitCode === 143 || exit.exitCode === 137);
    if (signalledByOthers && (await this.d.engine.goingAway())) {
      this.state.engineLost();
      await this.d.engine.whenUp();
      if (this.d.stopped()) return 'detached';
    }
    const written = await this.hooks.result((line) => capture.note(line));
    const logState = await capture.finish();
    if (Date.now() > deadline) this.state.timeout();
    const outcome = outcomeOf({
      exit,
      stop: this.state.stop,
      timeoutSeconds: this.settings.timeoutSeconds,
      memoryMiB: this.settings.memoryMiB,
      logError: logState.error,
    });
    const result = written ? { result: null, resultDocument: written.document } : { result: logState.lastStdout };
    return this.end({ ...outcome, exitCode: exit.exitCode, ...result });
  }

  /**
   * Records how the attempt ended, then removes the container: until that
   * is recorded the container stays, as the evidence a restarted Gantry
   * reconciles from.
   */
  private async end(attempt: AttemptEnd): Promise<RunEnd> {
    // A container that never started printed nothing: the stored log's last line is an earlier attempt's.
    const neverStarted = this.state.phase === 'preparing' || this.state.phase === 'created';
    const settled = await this.writer.settle(
      attempt.result === undefined && neverStarted ? { ...attempt, result: null } : attempt,
      this.state.cancelled,
    );
    if (settled === 'unrecorded') return 'detached';
    await this.container.remove();
    if (settled === 'already_ended') return 'ended';
    await this.hooks.ended();
    return settled;
  }

  /** At the deadline the job is stopped and ends timed_out. */
  private armTimeout(ms: number): void {
    this.container.armDeadline(ms, () => {
      this.state.timeout();
      this.container.stop();
    });
  }

  private async newCapture(o: Parameters<typeof LogCapture.open>[1] = {}): Promise<LogCapture> {
    const redact = await this.hooks.output();
    const onFenced = (err: Error) => void this.abandon(err.message);
    const capture = await this.writer.openCapture(redact ? { onFenced, redact } : { onFenced }, o);
    this.capture = capture;
    return capture;
  }
}
