import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { ContainerRuntime } from '../runtime/runtime.js';

/** setTimeout's limit (~24.8 days); longer deadlines re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The container of one job run, once it has one: its output stream, its
 * deadline timer, and stopping and removing it. Stopping and removing
 * never throw: a failure is logged, and the container is then the
 * evidence a later reconcile works from.
 */
export class JobContainer {
  id: string | null;
  private stream: Readable | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly o: { jobId: string; runtime: ContainerRuntime; graceSeconds: number; keep: boolean; log: Logger },
    id: string | null,
  ) {
    this.id = id;
  }

  /** The stream the run reads the container's output from now (destroyed on release). */
  track(stream: Readable): Readable {
    this.stream = stream;
    return stream;
  }

  /** Calls `fire` once `ms` from now, at once when that has passed already. */
  armDeadline(ms: number, fire: () => void): void {
    if (ms <= 0) {
      fire();
      return;
    }
    this.timer = setTimeout(() => (ms > MAX_TIMER_MS ? this.armDeadline(ms - MAX_TIMER_MS, fire) : fire()), Math.min(ms, MAX_TIMER_MS));
  }

  /** SIGTERM, the grace period, then SIGKILL; the run sees the container stop. */
  stop(): void {
    if (!this.id) return;
    this.o.runtime.stop(this.id, this.o.graceSeconds).catch((err: Error) => {
      this.o.log.warn({ err: err.message, jobId: this.o.jobId }, 'stopping the container failed');
    });
  }

  /** Removes the container, unless the operator keeps them (GANTRY_KEEP_CONTAINERS). */
  async remove(): Promise<void> {
    if (!this.id || this.o.keep) return;
    await this.o.runtime.remove(this.id).catch((err: Error) => {
      this.o.log.warn({ err: err.message, jobId: this.o.jobId }, 'removing the container failed');
    });
  }

  /** Kills the container at once and removes it (unless the operator keeps containers). */
  async discard(): Promise<void> {
    if (!this.id) return;
    await this.o.runtime.stop(this.id, 0).catch((err: Error) => {
      this.o.log.warn({ err: err.message, jobId: this.o.jobId }, 'killing the container failed');
    });
    await this.remove();
  }

  /** Stops the timer and closes the output stream; the container itself is left as it is. */
  release(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.stream?.destroy();
  }

  /** Stops the timer only (the run is over). */
  disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Closes the output stream (the engine went away under it). */
  dropStream(): void {
    this.stream?.destroy();
  }
}
