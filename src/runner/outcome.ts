import type { RetryCause } from '../model/attempt.js';
import type { JobState } from '../model/states.js';
import type { ContainerExit } from '../runtime/runtime.js';

export interface OutcomeInput {
  exit: ContainerExit;
  cancelRequested: boolean;
  /** Gantry stopped it for a cause of its own (a preemption, a faulty GPU, a policy), with why. */
  interrupted: { cause: RetryCause; reason: string } | null;
  timedOut: boolean;
  /** The job's timeout, for the reason. */
  timeoutSeconds: number;
  memoryMiB: number;
  /** Why the log is incomplete, if it is. */
  logError: string | null;
  /** The engine went away while the container ran (its exit may be the engine's shutdown, not the job's doing). */
  engineLost: boolean;
}

export interface Outcome {
  state: Extract<JobState, 'succeeded' | 'failed' | 'cancelled' | 'timed_out'>;
  reason: string | null;
  /** Why it ended, as retry rules name it; null for a success, a cancel, or the engine's doing. */
  cause: RetryCause | null;
}

/**
 * How a job ended, from how its container stopped. A cancel, an
 * interruption by Gantry or a timeout (in that order) explains the stop,
 * whatever the exit code; otherwise exit 0 without an
 * OOM kill is success and anything else a failure, with the engine's own
 * account of it. A stop the engine's going away explains is no cause a
 * retry rule can name.
 */
export function outcomeOf(i: OutcomeInput): Outcome {
  const logNote = i.logError ? `logs incomplete: ${i.logError}` : null;
  const withNote = (reason: string) => (logNote ? `${reason}; ${logNote}` : reason);
  if (i.cancelRequested) return { state: 'cancelled', reason: withNote('cancelled by request'), cause: null };
  if (i.interrupted) return { state: 'failed', reason: withNote(i.interrupted.reason), cause: i.interrupted.cause };
  if (i.timedOut) {
    return { state: 'timed_out', reason: withNote(`exceeded its timeout of ${i.timeoutSeconds} s and was stopped`), cause: 'timeout' };
  }
  const { exit } = i;
  if (exit.exitCode === 0 && !exit.oomKilled) return { state: 'succeeded', reason: logNote, cause: null };
  if (i.engineLost) {
    return {
      state: 'failed',
      cause: null,
      reason: withNote(
        `the container stopped while the container engine was away (exit code ${exit.exitCode}): the engine's shutdown ended it, not the job; enable live-restore in the Docker daemon so containers outlive engine restarts`,
      ),
    };
  }
  const why = exit.oomKilled
    ? `OOMKilled: the container exceeded its memory limit of ${i.memoryMiB} MiB`
    : `exited with code ${exit.exitCode}${exit.error ? `: ${exit.error}` : ''}`;
  return { state: 'failed', reason: withNote(why), cause: exit.oomKilled ? 'oom' : 'exit_code' };
}
