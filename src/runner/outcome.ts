import type { RetryCause } from '../model/attempt.js';
import type { JobState } from '../model/states.js';
import type { ContainerExit } from '../runtime/runtime.js';
import type { StopReason } from './run-state.js';

export interface OutcomeInput {
  exit: ContainerExit;
  /** Why the container stopped, when not of the job's own accord (RunState.stop). */
  stop: StopReason | null;
  /** The job's timeout, for the reason. */
  timeoutSeconds: number;
  memoryMiB: number;
  /** Why the log is incomplete, if it is. */
  logError: string | null;
}

export interface Outcome {
  state: Extract<JobState, 'succeeded' | 'failed' | 'cancelled' | 'timed_out'>;
  reason: string | null;
  /** Why it ended, as retry rules name it; null for a success, a cancel, or the engine's doing. */
  cause: RetryCause | null;
}

/**
 * How a job ended, from how its container stopped. A cancel, an
 * interruption by Gantry or a timeout (the run's stop reason) explains the
 * stop, whatever the exit code; otherwise exit 0 without an
 * OOM kill is success and anything else a failure, with the engine's own
 * account of it. A stop the engine's going away explains is no cause a
 * retry rule can name.
 */
export function outcomeOf(i: OutcomeInput): Outcome {
  const logNote = i.logError ? `logs incomplete: ${i.logError}` : null;
  const withNote = (reason: string) => (logNote ? `${reason}; ${logNote}` : reason);
  const { exit, stop } = i;
  if (stop?.kind === 'cancel') return { state: 'cancelled', reason: withNote('cancelled by request'), cause: null };
  if (stop?.kind === 'interrupt') return { state: 'failed', reason: withNote(stop.reason), cause: stop.cause };
  if (stop?.kind === 'timeout') {
    return { state: 'timed_out', reason: withNote(`exceeded its timeout of ${i.timeoutSeconds} s and was stopped`), cause: 'timeout' };
  }
  if (exit.exitCode === 0 && !exit.oomKilled) return { state: 'succeeded', reason: logNote, cause: null };
  if (stop?.kind === 'engine_lost') {
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

/**
 * How an attempt ends that a cancel or an interruption stopped before its
 * container started (`when` says at which point); null when neither did.
 */
export function outcomeBeforeStart(stop: StopReason | null, when: string): Outcome | null {
  if (stop?.kind === 'cancel') return { state: 'cancelled', reason: `cancelled ${when}`, cause: null };
  if (stop?.kind === 'interrupt') return { state: 'failed', reason: stop.reason, cause: stop.cause };
  return null;
}
