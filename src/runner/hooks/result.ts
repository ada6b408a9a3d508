import type { Logger } from 'pino';
import { ResultFolder, type ResultRead } from '../result-file.js';
import { type ContainerAdditions, JobFailure, type RunHook } from './hook.js';

export interface ResultHookOptions {
  /** GANTRY_RESULT_DIR. */
  resultDir: string;
  /** GANTRY_RESULT_MAX_BYTES. */
  maxBytes: number;
  node: string;
  jobId: string;
  attempt: number;
  log: Logger;
}

/**
 * A run's result folder (result-file.ts): mounted into the container, read
 * once the container exited, removed once the end is recorded (not before:
 * a restarted Gantry adopting the container reads it then).
 */
export class ResultHook implements RunHook {
  private readonly folder: ResultFolder;

  constructor(private readonly o: ResultHookOptions) {
    this.folder = new ResultFolder(o.resultDir, o.node, o.jobId, o.attempt);
  }

  /** A folder that cannot be made fails the job before it runs: its result would be lost after it ran. */
  async prestart(): Promise<ContainerAdditions> {
    await this.folder.prepare().catch((err: Error) => {
      throw new JobFailure(`the result folder cannot be made under GANTRY_RESULT_DIR ${this.o.resultDir}: ${err.message}`);
    });
    const { mount, env } = this.folder.mount();
    return { mounts: [mount], env };
  }

  /** What the job wrote; a folder that cannot be read is logged and taken as no document. */
  async result(): Promise<ResultRead> {
    return this.folder.read(this.o.maxBytes).catch((err) => {
      this.o.log.error({ err, jobId: this.o.jobId }, 'could not read the result file');
      return { kind: 'none' } as const;
    });
  }

  async ended(): Promise<void> {
    await this.folder.remove().catch((err) => this.o.log.warn({ err, jobId: this.o.jobId }, 'could not remove the result folder'));
  }
}
