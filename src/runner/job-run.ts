import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Allocation } from '../gpu/allocator.js';
import { explainGpuError, gpuInjection } from '../gpu/inject.js';
import type { GpuDevice } from '../gpu/inventory.js';
import { checkPolicy, type PolicyDecision } from '../jobs/policy.js';
import { settleAttempt } from '../jobs/retry-policy.js';
import { runSettings } from '../jobs/run-settings.js';
import type { JobService } from '../jobs/service.js';
import { LogCapture } from '../logs/capture.js';
import { SecretRedactor } from '../logs/secret-redactor.js';
import type { AttemptOutcome, RetryCause } from '../model/attempt.js';
import { FencedError } from '../model/errors.js';
import type { JobSpec } from '../model/job.js';
import type { RunSettings } from '../model/run-settings.js';
import { isTerminal, type JobState } from '../model/states.js';
import { type ContainerRuntime, type ContainerStatus, isUnreachable, type ManagedContainer } from '../runtime/runtime.js';
import { type SecretSource, SecretUnavailableError } from '../secrets/source.js';
import type { Fence, JobRecord, LogStore } from '../store/store.js';
import { containerSpec } from './container-spec.js';
import { recordEnd } from './end-recorder.js';
import type { EngineWatch } from './engine-watch.js';
import { ImageError, type ImagePuller } from './images.js';
import { JobContainer } from './job-container.js';
import { outcomeOf } from './outcome.js';
import { PreemptNotice } from './preempt-notice.js';
import { type RunSecrets, readSecrets, SecretFiles } from './secret-delivery.js';
import { untilStored } from './until-stored.js';

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

/** Why Gantry stops a run that did nothing wrong by its own account: the attempt ends failed with this cause. */
export interface Interruption {
  cause: RetryCause;
  reason: string;
}

/** A failure that is the job's, with the reason it ends with. */
class JobFailure extends Error {}

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
  private cancelRequested: boolean;
  private interrupted: Interruption | null = null;
  private timedOut = false;
  private engineLost = false;
  private abandoned = false;
  private readonly container: JobContainer;
  /** The spec's secrets, read once per run (for the container and for redacting its output). */
  private secrets: RunSecrets | null = null;
  private redactor: SecretRedactor | null = null;
  private readonly secretFiles: SecretFiles;
  private readonly notice: PreemptNotice | null;
  /** The capture of the container's output now, for Gantry's own lines (note). */
  private capture: LogCapture | null = null;
  readonly spec: JobSpec;
  /** How the job runs, as resolved at its submit. */
  readonly settings: RunSettings;
  /** This run's claim on the job: every write it makes about the job carries it. */
  readonly fence: Fence;

  constructor(
    private readonly d: JobRunDeps,
    private readonly record: JobRecord,
  ) {
    this.spec = record.spec;
    this.settings = runSettings(record);
    if (record.node === null) throw new Error(`job ${record.id} is run without being claimed by a node`);
    this.fence = { node: record.node, attempt: record.attempt };
    this.container = new JobContainer(
      {
        jobId: record.id,
        runtime: d.runtime,
        graceSeconds: this.settings.stopGraceSeconds,
        keep: d.config.logs.keepContainers,
        log: d.log,
      },
      record.containerId,
    );
    this.cancelRequested = record.cancelRequested;
    this.secretFiles = new SecretFiles(d.config.secrets.runDir, record.node, record.id, record.attempt, record.spec.secrets ?? []);
    this.notice = record.spec.preemptible ? new PreemptNotice(d.config.noticeDir, record.node, record.id, record.attempt) : null;
  }

  get id(): string {
    return this.record.id;
  }

  /** Stops the container (SIGTERM, grace, SIGKILL); the job then ends cancelled. */
  requestCancel(): void {
    this.cancelRequested = true;
    this.container.stop();
  }

  /**
   * Stops the run for a cause of Gantry's (SIGTERM, grace, SIGKILL): the
   * attempt ends failed with that cause, and the retry rules decide what
   * follows (a preemption is always retried). A preemptible job is told
   * first, in its notice file. A run already cancelled or interrupted
   * keeps its first reason; false then.
   */
  async interrupt(why: Interruption): Promise<boolean> {
    if (this.cancelRequested || this.interrupted !== null) return false;
    this.interrupted = why;
    const now = Date.now();
    const killAt = new Date(now + this.settings.stopGraceSeconds * 1000).toISOString();
    if (why.cause === 'preempted' && this.notice !== null && this.container.id !== null) {
      await this.notice
        .write({ reason: why.reason, signalAt: new Date(now).toISOString(), killAt, attempt: this.fence.attempt })
        .catch((err) => this.d.log.error({ err, jobId: this.id }, 'could not write the preemption notice; stopping the job anyway'));
    }
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
    if (this.abandoned) return;
    this.abandoned = true;
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
      const { config, images, jobs } = this.d;
      // The policy may have changed since submit (a restart with another
      // config), and host paths may have: check before any pull, and again
      // right before the container is created.
      this.checkPolicyNow();
      const gpuPatch = { gpus: alloc?.uuids ?? [], gpuMemoryMiB: alloc?.memoryMiB ?? null };
      if (this.cancelRequested) return this.end('cancelled', 'cancelled before it started');
      if (this.interrupted) return this.endInterrupted(this.interrupted);
      let needsPull: boolean;
      try {
        needsPull = await images.needsPull(this.spec.image, this.settings.pullPolicy);
      } catch (err) {
        if (isUnreachable(err)) return this.requeue(err as Error);
        throw err;
      }
      if (needsPull) {
        if (!(await this.step('pulling', { ...gpuPatch, pullStatus: 'starting pull', reason: null }))) return 'ended';
        try {
          await images.pull(this.spec.image, (status, progress) => {
            void jobs.patch(this.id, { pullStatus: status, pullProgress: progress }, this.fence).catch(() => undefined);
          });
        } catch (err) {
          if (isUnreachable(err)) return this.requeue(err as Error);
          throw err;
        }
        if (this.cancelRequested) return this.end('cancelled', 'cancelled while the image was pulled');
        if (this.interrupted) return this.endInterrupted(this.interrupted);
        if (!(await this.step('starting', { pullStatus: null, pullProgress: null }))) return 'ended';
      } else if (!(await this.step('starting', { ...gpuPatch, reason: null }))) return 'ended';

      // A pull can take minutes, and a path swapped for a symlink meanwhile
      // must not reach the engine as the path that was checked before it.
      const { mounts } = this.checkPolicyNow();
      const secrets = await this.readSecrets();
      await this.secretFiles.write(secrets);
      await this.notice?.prepare();
      const notice = this.notice?.mount();
      const devices = (alloc?.uuids ?? []).map((u) => this.d.devices.find((g) => g.uuid === u)!);
      const spec = containerSpec(
        {
          jobId: this.id,
          attempt: this.fence.attempt,
          owner: this.record.owner,
          spec: this.spec,
          settings: this.settings,
          mounts: [...mounts, ...this.secretFiles.mounts(), ...(notice ? [notice.mount] : [])],
          runEnv: { ...secrets.env, ...notice?.env },
          gpu: gpuInjection(config.gpus, devices, alloc?.memoryMiB ?? null),
        },
        config,
      );
      try {
        this.container.id = await this.d.runtime.create(spec);
      } catch (err) {
        if (isUnreachable(err)) return this.requeue(err as Error);
        throw new JobFailure(`could not create the container: ${explainGpuError(config.gpus.driver, (err as Error).message)}`);
      }
      await this.stored(() => jobs.patch(this.id, { containerId: this.container.id }, this.fence));
      return this.startAndFollow();
    });
  }

  /** A job whose container outlived a Gantry restart: capture resumes from the log driver. */
  async adopt(container: ManagedContainer): Promise<RunEnd> {
    return this.guard(async () => {
      this.container.id = container.id;
      // A preemption outlives a restart in its notice file: the container's
      // end is then the preemption's, not the job's own failure.
      const notice = await this.notice?.read();
      if (notice) this.interrupted = { cause: 'preempted', reason: notice.reason };
      if (this.record.containerId !== container.id) {
        await this.stored(() => this.d.jobs.patch(this.id, { containerId: container.id }, this.fence));
      }
      // Created but never started: the name gantry-<id> is taken by this
      // container, so no second one can exist; start this one.
      if (container.state === 'created') return this.startAndFollow();
      if (this.record.state === 'starting') {
        await this.step('running', { startedAt: new Date(container.created * 1000).toISOString() });
      }
      const deadline = this.record.deadlineAt ? Date.parse(this.record.deadlineAt) : Number.POSITIVE_INFINITY;
      if (container.state === 'running') this.armTimeout(deadline - Date.now());
      if (this.cancelRequested || this.interrupted) this.container.stop();
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
      if (err instanceof FencedError || this.abandoned) {
        await this.abandon((err as Error).message);
        return 'fenced';
      }
      if (this.d.stopped()) return 'detached';
      if (isUnreachable(err) && this.container.id !== null) {
        this.d.engine.lost((err as Error).message);
        await this.d.engine.whenUp();
        if (this.d.stopped()) return 'detached';
        return this.guard(() => this.resume());
      }
      const ours = err instanceof JobFailure || err instanceof ImageError;
      if (!ours) this.d.log.error({ err, jobId: this.id }, 'job runner failed');
      return this.end('failed', ours ? (err as Error).message : `internal error: ${(err as Error).message}`, {
        cause: err instanceof ImageError ? 'image_pull' : null,
      });
    } finally {
      this.container.disarm();
      await this.dropSecretFiles();
    }
  }

  /** After the engine was away while the job started: its container as the engine now has it decides. */
  private async resume(): Promise<RunEnd> {
    const container = (await this.d.runtime.listManaged()).find((c) => c.id === this.container.id);
    if (!container) throw new JobFailure('the container vanished while the container engine was away');
    if (container.state === 'created') return this.startAndFollow();
    const current = await this.stored(() => this.d.jobs.current(this.id));
    const startedAt = current.startedAt ?? new Date(container.created * 1000).toISOString();
    const deadline = Date.parse(startedAt) + this.timeoutSeconds() * 1000;
    if (current.state === 'starting') await this.step('running', { startedAt, deadlineAt: new Date(deadline).toISOString() });
    if (container.state === 'running') this.armTimeout(deadline - Date.now());
    return this.follow(await this.d.runtime.followLogs(container.id), deadline);
  }

  /** Back to the queue: the engine is away and nothing of the job exists in it yet. */
  private async requeue(err: Error): Promise<RunEnd> {
    this.d.engine.lost(err.message);
    const current = await this.stored(() => this.d.jobs.current(this.id));
    // Back in the queue with no node: any node may take it again.
    const back = { reason: null, pullStatus: null, pullProgress: null, gpus: [], gpuMemoryMiB: null, node: null };
    if (current.state !== 'queued') await this.stored(() => this.d.jobs.transition(this.id, 'queued', back, this.fence));
    else await this.stored(() => this.d.jobs.patch(this.id, { node: null }, this.fence));
    return 'requeued';
  }

  /** A state change on the way; false when the job was ended meanwhile by another hand (a cancel). */
  private async step(to: JobState, patch: Parameters<JobService['transition']>[2]): Promise<boolean> {
    return (await this.stored(() => this.d.jobs.transition(this.id, to, patch, this.fence))) !== undefined;
  }

  /** A store call that waits out the store being unable to take it (see untilStored). */
  private stored<T>(fn: () => Promise<T>): Promise<T> {
    return untilStored(fn, { stopped: this.d.stopped, log: this.d.log, jobId: this.id });
  }

  private checkPolicyNow(): PolicyDecision {
    const decision = checkPolicy(this.spec, this.record.owner, this.d.config.policy, this.d.config.dockerSocket);
    if (decision.errors.length > 0) {
      throw new JobFailure(`refused by policy at start: ${decision.errors.map((e) => `body.${e.path}: ${e.message}`).join('; ')}`);
    }
    return decision;
  }

  /** Attach first (no output is missed), then start, then follow to the end. */
  private async startAndFollow(): Promise<RunEnd> {
    const id = this.container.id!;
    if (this.cancelRequested) {
      await this.container.remove();
      return this.end('cancelled', 'cancelled before the container started');
    }
    if (this.interrupted) {
      await this.container.remove();
      return this.endInterrupted(this.interrupted);
    }
    // A container created before a restart is started only with its secret files back in place.
    await this.secretFiles.write(await this.readSecrets());
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
      await this.dropSecretFiles();
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
    // The started container keeps its mounts: the files are needed no longer.
    await this.dropSecretFiles();
    const startedAt = new Date();
    const timeout = this.timeoutSeconds();
    await this.step('running', {
      startedAt: startedAt.toISOString(),
      deadlineAt: new Date(startedAt.getTime() + timeout * 1000).toISOString(),
    });
    this.armTimeout(timeout * 1000);
    return this.awaitExit(capture, consumed, Number.POSITIVE_INFINITY);
  }

  private async follow(stream: Readable, deadline: number): Promise<RunEnd> {
    const capture = await this.newCapture();
    return this.awaitExit(capture, capture.consume(this.container.track(stream)), deadline);
  }

  private async awaitExit(capture: LogCapture, consumed: Promise<void>, deadline: number): Promise<RunEnd> {
    const id = this.container.id!;
    let exit: ContainerStatus['exit'];
    for (;;) {
      try {
        exit = await this.d.runtime.wait(id);
        break;
      } catch (err) {
        if (!isUnreachable(err) || this.d.stopped()) throw err;
        // The engine went away under a running container. Keep what was
        // captured, wait for the engine, then see what became of the container.
        this.d.engine.lost((err as Error).message);
        this.container.dropStream();
        await consumed;
        await capture.detach();
        await this.d.engine.whenUp();
        if (this.d.stopped()) return 'detached';
        const status = await this.d.runtime.inspect(id);
        if (!status) throw new JobFailure('the container vanished while the container engine was away');
        // A container that is still running outlived the engine (live-restore).
        this.engineLost = !status.running;
        if (status.running && (this.cancelRequested || this.interrupted || this.timedOut)) this.container.stop();
        capture = await this.newCapture();
        consumed = capture.consume(this.container.track(await this.d.runtime.followLogs(id)));
      }
    }
    await consumed;
    if (this.d.stopped()) return 'detached';
    const signalledByOthers =
      !this.cancelRequested && !this.interrupted && !this.timedOut && !exit.oomKilled && (exit.exitCode === 143 || exit.exitCode === 137);
    if (!this.engineLost && signalledByOthers && (await this.d.engine.goingAway())) {
      this.engineLost = true;
      await this.d.engine.whenUp();
      if (this.d.stopped()) return 'detached';
    }
    const logState = await capture.finish();
    if (!this.timedOut && Date.now() > deadline && !this.cancelRequested) this.timedOut = true;
    const { state, reason, cause } = outcomeOf({
      exit,
      cancelRequested: this.cancelRequested,
      interrupted: this.interrupted,
      timedOut: this.timedOut,
      timeoutSeconds: this.timeoutSeconds(),
      memoryMiB: this.settings.memoryMiB,
      logError: logState.error,
      engineLost: this.engineLost,
    });
    return this.end(state, reason, { exitCode: exit.exitCode, result: logState.lastStdout, cause });
  }

  /**
   * Records how the attempt ended, then removes the container: until that
   * is recorded the container stays, as the evidence a restarted Gantry
   * reconciles from. The spec's retry rules decide (retry-policy.ts)
   * whether that is the job's end or the job goes back to the queue as its
   * next attempt, which any node may take ('requeued').
   */
  private async end(
    state: AttemptOutcome,
    reason: string | null,
    o: { exitCode?: number | null; result?: string | null; cause?: RetryCause | null } = {},
  ): Promise<RunEnd> {
    const current = await this.stored(() => this.d.jobs.current(this.id)).catch(() => null);
    if (current && isTerminal(current.state)) {
      await this.container.remove();
      return 'ended';
    }
    const exitCode = o.exitCode ?? null;
    const cancelRequested = this.cancelRequested || (current?.cancelRequested ?? false);
    const { patch, retried } = settleAttempt(
      { ...this.record, cancelRequested },
      { outcome: state, cause: o.cause ?? null, reason, exitCode },
      new Date(),
    );
    const rec = { jobs: this.d.jobs, log: this.d.log, stopped: this.d.stopped, fence: this.fence };
    let recorded: boolean;
    if (retried) {
      recorded = await recordEnd(rec, this.id, 'queued', patch);
    } else {
      const result = o.result !== undefined ? o.result : ((await this.d.logs.state(this.id).catch(() => null))?.lastStdout ?? null);
      recorded = await recordEnd(rec, this.id, state, { ...patch, result, pullStatus: null, pullProgress: null });
    }
    if (!recorded) return 'detached';
    await this.container.remove();
    await this.notice?.remove().catch((err) => this.d.log.warn({ err, jobId: this.id }, 'could not remove the notice folder'));
    return retried ? 'requeued' : 'ended';
  }

  private endInterrupted(why: Interruption): Promise<RunEnd> {
    return this.end('failed', why.reason, { cause: why.cause });
  }

  /** At the deadline the job is stopped and ends timed_out. */
  private armTimeout(ms: number): void {
    this.container.armDeadline(ms, () => {
      this.timedOut = true;
      this.container.stop();
    });
  }

  private timeoutSeconds(): number {
    return this.settings.timeoutSeconds;
  }

  /** Removes the run's secret files; one that cannot be removed is logged, never the job's failure. */
  private async dropSecretFiles(): Promise<void> {
    await this.secretFiles.remove().catch((err) => this.d.log.error({ err, jobId: this.id }, 'could not remove secret files'));
  }

  /**
   * The run's secrets, read from the source once. A secret that cannot be
   * had fails the job: it would run without it, or (after a restart) its
   * output could no longer be redacted.
   */
  private async readSecrets(): Promise<RunSecrets> {
    if (this.secrets === null) {
      try {
        this.secrets = await readSecrets(this.d.secrets, this.record.owner, this.spec.secrets ?? []);
      } catch (err) {
        if (err instanceof SecretUnavailableError) throw new JobFailure(err.message);
        throw err;
      }
      this.redactor = SecretRedactor.of(this.secrets.values);
    }
    return this.secrets;
  }

  private async newCapture(o: Parameters<typeof LogCapture.open>[1] = {}): Promise<LogCapture> {
    await this.readSecrets();
    const redactor = this.redactor;
    this.capture = await this.stored(() =>
      LogCapture.open(
        {
          jobId: this.id,
          store: this.d.logs,
          maxBytes: this.d.config.logs.maxBytesPerJob,
          driver: this.d.config.logs.driver,
          log: this.d.log,
          onAppend: (seq) => this.d.onAppend(this.id, seq),
          fence: this.fence,
          onFenced: (err) => void this.abandon(err.message),
          stopped: this.d.stopped,
          ...(redactor ? { redact: (line: string) => redactor.redact(line) } : {}),
        },
        o,
      ),
    );
    return this.capture;
  }
}
