import type { JobState } from '../model/states.js';
import type { JobRecord } from './job-record.js';

/** A change another process made, as the store reports it. */
export type StoreChange =
  | {
      kind: 'job';
      jobId: string;
      state: JobState;
      node: string | null;
      cancelRequested: boolean;
      /** The job as that change left it, when the store could carry it; null: read it if needed. */
      record: JobRecord | null;
    }
  | { kind: 'log'; jobId: string; lastSeq: number }
  | { kind: 'nodes' }
  /** The fleet's decider wrote assignments or preemptions for these nodes. */
  | { kind: 'decided'; nodes: string[] }
  /** A node reported what it holds and runs (for the fleet's decider). */
  | { kind: 'report' }
  /** The fleet's decider gave its lease up (a clean shutdown): another node may take it now. */
  | { kind: 'resigned' }
  /** Changes may have been missed (the connection was lost and is back, and the store cannot say which): look again at everything. */
  | { kind: 'resync' };

/** What other processes change in a shared store, as it hears of them. */
export interface ChangeFeed {
  subscribe(fn: (change: StoreChange) => void): () => void;
}
