/** Job lifecycle: queued → pulling → starting → running → one terminal state. */
export const JOB_STATES = ['queued', 'pulling', 'starting', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'] as const;

export type JobState = (typeof JOB_STATES)[number];

export const TERMINAL_STATES: ReadonlySet<JobState> = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);

const NEXT: Record<JobState, readonly JobState[]> = {
  queued: ['pulling', 'starting', 'failed', 'cancelled'],
  // Back to `queued`: the container engine went away before the job's container existed.
  pulling: ['starting', 'queued', 'failed', 'cancelled'],
  starting: ['running', 'queued', 'failed', 'cancelled', 'timed_out'],
  // Back to `queued` from running only as a new attempt, when the node running it was lost.
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
