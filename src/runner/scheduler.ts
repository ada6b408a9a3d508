import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { GpuAllocator, Allocation } from '../gpu/allocator.js';
import { explainGpuError, gpuInjection } from '../gpu/inject.js';
import { planQueue } from '../gpu/queue.js';
import type { JobController, JobService } from '../jobs/service.js';
import type { JobSpec } from '../jobs/schema.js';
import { isTerminal, type JobState } from '../jobs/states.js';
import { LogCapture } from '../logs/capture.js';
import type { JobHub } from '../logs/hub.js';
import type { LogStore } from '../logs/store.js';
import type { JobRow } from '../store/jobs-repo.js';
import { dockerMessage, ImageError, type ImagePuller } from './images.js';
import { buildContainerOptions, checkPolicy, type PolicyDecision } from './policy.js';

export interface SchedulerDeps {
  config: Config;
  docker: Docker;
  jobs: JobService;
  logs: LogStore;
  hub: JobHub;
  gpus: GpuAllocator;
  images: ImagePuller;
  log: Logger;
  /** issue 9 (metrics): called once per failed Docker API call, by operation. */
  dockerError?: (op: 'create' | 'start' | 'stop' | 'remove' | 'other') => void;
}

/** A job this process is driving: it holds a run slot and maybe GPUs. */
interface ActiveJob {
  id: string;
  spec: JobSpec;
  containerId: string | null;
  cancelRequested: boolean;
  timedOut: boolean;
  timer: NodeJS.Timeout | null;
  stream: Readable | null;
}

/** The outcome read from Docker once the container has stopped. */
interface Exit {
  exitCode: number | null;
  oomKilled: boolean;
  error: string | null;
}

class JobFailure extends Error {}

/**
 * Runs the queue: picks queued jobs in order (priority, then FIFO), gives
 * them GPUs and a run slot, and drives each through Docker to a terminal
 * state. GPUs are released exactly once, in one finally block, on every path.
 */
export class Scheduler implements JobController {
  private readonly active = new Map<string, ActiveJob>();
  private readonly waiting = new Map<string, string>();
  private kickPending = false;
  private stopped = false;

  constructor(private readonly d: SchedulerDeps) {}

  // ---- JobController -------------------------------------------------------

  kick(): void {
    if (this.kickPending || this.stopped) return;
    this.kickPending = true;
    setImmediate(() => {
      this.kickPending = false;
      this.schedule();
    });
  }

  cancelActive(jobId: string): void {
    const a = this.active.get(jobId);
    if (!a) return;
    a.cancelRequested = true;
    this.stopContainer(a);
  }

  isLaunched(jobId: string): boolean {
    return this.active.has(jobId);
  }

  waitReason(jobId: string): string | null {
    return this.waiting.get(jobId) ?? null;
  }

  impossibleGpuRequest(spec: JobSpec): string | null {
    return spec.gpus ? this.d.gpus.impossible(spec.gpus) : null;
  }

  /**
   * Stops driving jobs without touching their containers: they keep running
   * and the next start re-attaches to them.
   */
  shutdown(): void {
    this.stopped = true;
    for (const a of this.active.values()) {
      if (a.timer) clearTimeout(a.timer);
      a.stream?.destroy();
    }
  }

  // ---- queue ---------------------------------------------------------------

  private schedule(): void {
    if (this.stopped) return;
    const { jobs, gpus, config } = this.d;
    this.waiting.clear();
    // Launched but still `queued` in the store until its first await.
    const rows = jobs.repo.queued().filter((row) => !this.active.has(row.id));
    const specs = rows.map((row) => JSON.parse(row.spec) as JobSpec);
    // GPU issue: the queue policy (strict order for GPU jobs, run slots, and
    // refusing a queued request that no longer fits the inventory, which
    // would otherwise block every later GPU job) moved to src/gpu/queue.ts,
    // where it is unit-tested; planQueue answers once per row, in order.
    const plan = planQueue(
      rows.map((row, i) => ({ id: row.id, gpus: specs[i]!.gpus })),
      gpus,
      config.maxRunning - this.active.size,
      config.maxRunning,
    );
    plan.forEach((d, i) => {
      const row = rows[i]!;
      if (d.action === 'wait') this.waiting.set(row.id, d.reason);
      else if (d.action === 'refuse') jobs.transition(row.id, 'failed', { reason: d.reason, finished_at: new Date().toISOString() });
      else this.launch(row, specs[i]!, (a) => this.runFresh(a, row, d.alloc));
    });
  }

  private launch(row: JobRow, spec: JobSpec, body: (a: ActiveJob) => Promise<void>): void {
    const a: ActiveJob = {
      id: row.id,
      spec,
      containerId: row.container_id,
      cancelRequested: row.cancel_requested === 1,
      timedOut: false,
      timer: null,
      stream: null,
    };
    this.active.set(row.id, a);
    void body(a)
      .catch((err: unknown) => {
        if (this.stopped) return;
        const reason = err instanceof JobFailure || err instanceof ImageError ? err.message : `internal error: ${dockerMessage(err)}`;
        if ((err as { statusCode?: unknown } | null)?.statusCode !== undefined) this.d.dockerError?.('other'); // issue 9 (metrics)
        if (!(err instanceof JobFailure || err instanceof ImageError)) this.d.log.error({ err, jobId: a.id }, 'job runner failed');
        if (this.endWith(a, 'failed', { reason, exitCode: null })) void this.removeContainer(a);
      })
      .finally(() => {
        if (a.timer) clearTimeout(a.timer);
        this.active.delete(a.id);
        if (!this.stopped) {
          // Exactly one release per allocation, whatever path ended the job.
          this.d.gpus.release(a.id);
          this.kick();
        }
      });
  }

  // ---- one job, from the queue ---------------------------------------------

  private async runFresh(a: ActiveJob, row: JobRow, alloc: Allocation | null): Promise<void> {
    const { config, images, jobs, docker } = this.d;
    // The policy may have changed since submit (restart with a new config),
    // and host paths may have: check before any pull, and again below.
    this.checkPolicyNow(a.spec);
    const gpuPatch = { gpus: JSON.stringify(alloc?.uuids ?? []), gpu_memory_mib: alloc?.memoryMiB ?? null };
    const pullPolicy = a.spec.pullPolicy ?? config.policy.pullPolicy;
    if (a.cancelRequested) {
      this.endWith(a, 'cancelled', { reason: 'cancelled before it started', exitCode: null });
      return;
    }
    if (await images.needsPull(a.spec.image, pullPolicy)) {
      jobs.transition(a.id, 'pulling', { ...gpuPatch, pull_status: 'starting pull', reason: null });
      await images.pull(a.spec.image, (status, progress) => {
        jobs.patch(a.id, { pull_status: status, pull_progress: progress });
      });
      if (a.cancelRequested) {
        this.endWith(a, 'cancelled', { reason: 'cancelled while the image was pulled', exitCode: null });
        return;
      }
      jobs.transition(a.id, 'starting', { pull_status: null, pull_progress: null });
    } else {
      jobs.transition(a.id, 'starting', { ...gpuPatch, reason: null });
    }

    // Bind sources are resolved again right before the container is created:
    // a pull can take minutes, and a path swapped for a symlink meanwhile
    // must not reach Docker as the path that was checked before it.
    const { mounts } = this.checkPolicyNow(a.spec);
    const devices = (alloc?.uuids ?? []).map((u) => this.d.gpus.devices.find((g) => g.uuid === u)!);
    const options = buildContainerOptions(
      { jobId: a.id, owner: row.owner, spec: a.spec, mounts, gpu: gpuInjection(config.gpus, devices, alloc?.memoryMiB ?? null) },
      config,
    );
    let container: Docker.Container;
    try {
      container = await docker.createContainer(options);
    } catch (err) {
      this.d.dockerError?.('create'); // issue 9 (metrics)
      throw new JobFailure(`could not create the container: ${explainGpuError(config.gpus.driver, dockerMessage(err))}`);
    }
    a.containerId = container.id;
    jobs.patch(a.id, { container_id: container.id });
    await this.startAndFollow(a, container);
  }

  private checkPolicyNow(spec: JobSpec): PolicyDecision {
    const decision = checkPolicy(spec, this.d.config.policy, this.d.config.dockerSocket);
    if (decision.errors.length > 0) {
      throw new JobFailure(`refused by policy at start: ${decision.errors.map((e) => `${e.field}: ${e.message}`).join('; ')}`);
    }
    return decision;
  }

  /** Attach first (no output is missed), then start, then follow to the end. */
  private async startAndFollow(a: ActiveJob, container: Docker.Container): Promise<void> {
    if (a.cancelRequested) {
      await this.removeContainer(a);
      this.endWith(a, 'cancelled', { reason: 'cancelled before the container started', exitCode: null });
      return;
    }
    const stream = (await container.attach({ stream: true, stdout: true, stderr: true, logs: false })) as unknown as Readable;
    const capture = this.newCapture(a);
    const consumed = capture.consume(this.track(a, stream));
    try {
      await container.start();
    } catch (err) {
      stream.destroy();
      await consumed;
      capture.finish();
      this.d.dockerError?.('start'); // issue 9 (metrics)
      // GPU issue: name the GPU runtime the engine lacks, when that is why.
      throw new JobFailure(`the container did not start: ${explainGpuError(this.d.config.gpus.driver, dockerMessage(err))}`);
    }
    const startedAt = new Date();
    const timeout = a.spec.timeoutSeconds ?? this.d.config.policy.defaultTimeoutSeconds;
    this.d.jobs.transition(a.id, 'running', {
      started_at: startedAt.toISOString(),
      deadline_at: new Date(startedAt.getTime() + timeout * 1000).toISOString(),
    });
    this.armTimeout(a, timeout * 1000);
    await this.awaitExit(a, container, consumed, capture);
  }

  // ---- one job, after a restart --------------------------------------------

  /**
   * Re-adopts a job whose container outlived a Gantry restart: capture
   * resumes from Docker's log driver where the store left off, and the job
   * then ends normally.
   */
  adopt(row: JobRow, info: Docker.ContainerInfo): void {
    const spec = JSON.parse(row.spec) as JobSpec;
    const alloc: Allocation = { uuids: JSON.parse(row.gpus) as string[], memoryMiB: row.gpu_memory_mib };
    if (alloc.uuids.length > 0) this.d.gpus.restore(row.id, alloc);
    this.launch({ ...row, container_id: info.Id }, spec, async (a) => {
      const container = this.d.docker.getContainer(info.Id);
      if (row.container_id !== info.Id) this.d.jobs.patch(a.id, { container_id: info.Id });
      // Created but never started: the name gantry-<id> is taken by this
      // container, so no second one can exist; start this one.
      if (info.State === 'created') return this.startAndFollow(a, container);
      if (row.state === 'starting') {
        this.d.jobs.transition(a.id, 'running', { started_at: new Date(info.Created * 1000).toISOString() });
      }
      const stream = (await container.logs({ follow: true, stdout: true, stderr: true })) as unknown as Readable;
      const capture = this.newCapture(a);
      const consumed = capture.consume(this.track(a, stream));
      if (a.cancelRequested) this.stopContainer(a);
      const deadline = row.deadline_at ? Date.parse(row.deadline_at) : Number.POSITIVE_INFINITY;
      if (info.State === 'running') this.armTimeout(a, deadline - Date.now());
      await this.awaitExit(a, container, consumed, capture, deadline);
    });
  }

  // ---- shared steps ----------------------------------------------------------

  private newCapture(a: ActiveJob): LogCapture {
    return new LogCapture({
      jobId: a.id,
      store: this.d.logs,
      maxBytes: this.d.config.logs.maxBytesPerJob,
      driver: this.d.config.logs.driver,
      log: this.d.log,
      onAppend: (seq) => this.d.hub.publishAppend(a.id, seq),
    });
  }

  private track(a: ActiveJob, stream: Readable): Readable {
    a.stream = stream;
    return stream;
  }

  private armTimeout(a: ActiveJob, ms: number): void {
    const fire = () => {
      a.timedOut = true;
      this.stopContainer(a);
    };
    if (ms <= 0) return fire();
    // setTimeout's limit is ~24.8 days; longer deadlines re-arm.
    const MAX = 2 ** 31 - 1;
    a.timer = setTimeout(() => (ms > MAX ? this.armTimeout(a, ms - MAX) : fire()), Math.min(ms, MAX));
  }

  private async awaitExit(
    a: ActiveJob,
    container: Docker.Container,
    consumed: Promise<void>,
    capture: LogCapture,
    deadline = Number.POSITIVE_INFINITY,
  ): Promise<void> {
    await container.wait();
    await consumed;
    if (this.stopped) return;
    const logState = capture.finish();
    const exit = await this.readExit(container);
    const finishedAt = Date.now();
    if (!a.timedOut && finishedAt > deadline && !a.cancelRequested) a.timedOut = true;
    const result = logState.lastStdout;
    const logNote = logState.error ? `; logs incomplete: ${logState.error}` : '';
    let state: JobState;
    let reason: string | null;
    if (a.cancelRequested) {
      [state, reason] = ['cancelled', `cancelled by request${logNote}`];
    } else if (a.timedOut) {
      const limit = a.spec.timeoutSeconds ?? this.d.config.policy.defaultTimeoutSeconds;
      [state, reason] = ['timed_out', `exceeded its timeout of ${limit} s and was stopped${logNote}`];
    } else if (exit.exitCode === 0 && !exit.oomKilled) {
      [state, reason] = ['succeeded', logNote ? logNote.slice(2) : null];
    } else {
      const memMiB = a.spec.resources?.memoryMiB ?? this.d.config.policy.defaultMemoryMiB;
      const why = exit.oomKilled
        ? `OOMKilled: the container exceeded its memory limit of ${memMiB} MiB`
        : `exited with code ${exit.exitCode}${exit.error ? `: ${exit.error}` : ''}`;
      [state, reason] = ['failed', why + logNote];
    }
    // Until the end is recorded, the container stays: it is the evidence a
    // restarted Gantry would reconcile from.
    if (this.endWith(a, state, { reason, exitCode: exit.exitCode, result })) await this.removeContainer(a);
  }

  private async readExit(container: Docker.Container): Promise<Exit> {
    const info = await container.inspect();
    return { exitCode: info.State.ExitCode ?? null, oomKilled: info.State.OOMKilled === true, error: info.State.Error || null };
  }

  /**
   * Records the job's end. When the store refuses the write (disk full), the
   * outcome is kept and retried every few seconds until it lands, so a
   * job's real result is never replaced by a storage error; /readyz reports
   * the store as not writable meanwhile. Returns whether it was recorded now.
   */
  private endWith(a: ActiveJob, state: JobState, o: { reason: string | null; exitCode: number | null; result?: string | null }): boolean {
    const finishedAt = new Date().toISOString();
    const attempt = (): boolean => {
      try {
        const row = this.d.jobs.repo.get(a.id);
        if (!row || isTerminal(row.state)) return true;
        this.d.jobs.transition(a.id, state, {
          reason: o.reason,
          exit_code: o.exitCode,
          result: o.result ?? this.d.logs.state(a.id).lastStdout,
          finished_at: finishedAt,
          pull_status: null,
          pull_progress: null,
        });
        return true;
      } catch (err) {
        this.d.log.error({ err, jobId: a.id, state }, 'could not record the end of the job; retrying');
        return false;
      }
    };
    if (attempt()) return true;
    const retry = setInterval(() => {
      if (this.stopped || attempt()) {
        clearInterval(retry);
        if (!this.stopped) void this.removeContainer(a);
      }
    }, 2000);
    return false;
  }


  private stopContainer(a: ActiveJob): void {
    if (!a.containerId) return;
    this.d.docker
      .getContainer(a.containerId)
      .stop({ t: this.d.config.stopGraceSeconds })
      .catch((err: { statusCode?: number }) => {
        // 304: already stopped; 404: already gone.
        if (err.statusCode === 304 || err.statusCode === 404) return;
        this.d.dockerError?.('stop'); // issue 9 (metrics)
        this.d.log.warn({ err, jobId: a.id }, 'stopping the container failed');
      });
  }

  private async removeContainer(a: ActiveJob): Promise<void> {
    if (!a.containerId || this.d.config.logs.keepContainers) return;
    await this.d.docker
      .getContainer(a.containerId)
      .remove({ force: true })
      .catch((err: { statusCode?: number }) => {
        if (err.statusCode === 404) return;
        this.d.dockerError?.('remove'); // issue 9 (metrics)
        this.d.log.warn({ err, jobId: a.id }, 'removing the container failed');
      });
  }
}
