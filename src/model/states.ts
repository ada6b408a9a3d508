/** Job lifecycle: queued → pulling → starting → running → one terminal state. */
export const JOB_STATES = ['queued', 'pulling', 'starting', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'] as const;

export type JobState = (typeof JOB_STATES)[number];

export const TERMINAL_STATES: ReadonlySet<JobState> = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);

/**
 * Back to `queued` from pulling or starting: the container engine went away
 * before the job's container existed (the same attempt), or the attempt
 * ended for a cause its retry rules retry (the next attempt). From running:
 * only as the next attempt. From queued to queued: the next attempt, when
 * a node that took the job could not have its image.
 */
const NEXT: Record<JobState, readonly JobState[]> = {
  queued: ['pulling', 'starting', 'failed', 'cancelled', 'queued'],
  pulling: ['starting', 'queued', 'failed', 'cancelled'],
  starting: ['running', 'queued', 'failed', 'cancelled', 'timed_out'],
  running: ['succeeded', 'failed', 'cancelled', 'timed_out', 'queued'],
  succeeded: [],
  failed: [],
  cancelled: [],
  timed_out: [],
};

export function isTerminal(state: JobState): boolean {
  return TERMINAL_STATES.has(state);
}

export function canTransition(from: JobState, to: JobState): boolean {
  return NEXT[from].includes(to);
}

export class IllegalTransitionError extends Error {
  constructor(
    readonly from: JobState,
    readonly to: JobState,
  ) {
    super(`illegal job state transition ${from} → ${to}`);
  }
}

export function assertTransition(from: JobState, to: JobState): void {
  if (!canTransition(from, to)) throw new IllegalTransitionError(from, to);
}
