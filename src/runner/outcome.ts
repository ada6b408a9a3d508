import type { JobState } from '../model/states.js';
import type { ContainerExit } from '../runtime/runtime.js';

export interface OutcomeInput {
  exit: ContainerExit;
  cancelRequested: boolean;
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
}

/**
 * How a job ended, from how its container stopped. A cancel or a timeout
 * explains the stop, whatever the exit code; otherwise exit 0 without an
 * OOM kill is success and anything else a failure, with the engine's own
 * account of it.
 */
export function outcomeOf(i: OutcomeInput): Outcome {
  const logNote = i.logError ? `logs incomplete: ${i.logError}` : null;
  const withNote = (reason: string) => (logNote ? `${reason}; ${logNote}` : reason);
  if (i.cancelRequested) return { state: 'cancelled', reason: withNote('cancelled by request') };
  if (i.timedOut) return { state: 'timed_out', reason: withNote(`exceeded its timeout of ${i.timeoutSeconds} s and was stopped`) };
  const { exit } = i;
  if (exit.exitCode === 0 && !exit.oomKilled) return { state: 'succeeded', reason: logNote };
  if (i.engineLost) {
    return {
      state: 'failed',
      reason: withNote(
        `the container stopped while the container engine was away (exit code ${exit.exitCode}): the engine's shutdown ended it, not the job; enable live-restore in the Docker daemon so containers outlive engine restarts`,
      ),
    };
  }
  const why = exit.oomKilled
    ? `OOMKilled: the container exceeded its memory limit of ${i.memoryMiB} MiB`
    : `exited with code ${exit.exitCode}${exit.error ? `: ${exit.error}` : ''}`;
  return { state: 'failed', reason: withNote(why) };
}
