import type { ResolvedMount } from '../../jobs/policy.js';
import type { TextFilter } from '../../logs/secret-redactor.js';
import type { ResultRead } from '../result-file.js';
import type { Interruption } from '../run-state.js';

/** A failure that is the job's, with the reason it ends with: a hook throws it to fail the job. */
export class JobFailure extends Error {}

/** What a hook adds to the container, beyond its spec, when the run creates it. */
export interface ContainerAdditions {
  mounts?: ResolvedMount[];
  env?: Record<string, string>;
}

/** Gantry stops the run for a cause of its own: SIGTERM at `signalAt` (now), SIGKILL at `killAt` at the latest. */
export interface StopNotice {
  why: Interruption;
  signalAt: string;
  killAt: string;
  /** Whether the run has a container (before it has one, nothing runs that could be told). */
  hasContainer: boolean;
}

/**
 * One side concern of a run (its secrets, its preemption notice), told of
 * each point of the run's life it has a part in; JobRun calls the hooks in
 * order at each point. A hook keeps its own state for the run (it is made
 * per run) and never stops the run from ending: the points after the start
 * log what fails instead of throwing. Before the start a hook may throw
 * JobFailure to fail the job.
 */
export interface RunHook {
  /** Before the container is created: what it gets beyond its spec. */
  prestart?(): Promise<ContainerAdditions>;
  /** Right before the container is started, whether this run created it or found it created after a restart. */
  starting?(): Promise<void>;
  /** The container started. */
  poststart?(): Promise<void>;
  /** The container's output is about to be captured: a change made to each stream's text (one filter per stream) before it is cut into lines and stored. */
  output?(): Promise<(() => TextFilter) | null>;
  /** The run adopts a container that outlived a restart: an interruption that was under way, if the hook knows one. */
  adopted?(): Promise<Interruption | null>;
  /** The container exited: the result document the job left, if the hook holds one. */
  result?(): Promise<ResultRead>;
  /** Gantry stops the run for a cause of its own, before SIGTERM. */
  stop?(notice: StopNotice): Promise<void>;
  /** The run's end is recorded and its container removed. */
  ended?(): Promise<void>;
  /**
   * Drops what the run keeps on the host only until its container started:
   * called when a start fails and when the run is over, so possibly twice.
   */
  cleanup?(): Promise<void>;
}
