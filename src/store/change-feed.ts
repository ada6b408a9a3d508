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

/**
 * Where a node reaches the fleet's change relay: the decider's API and the
 * bearer token of its term's relay. The decider publishes it with its lease
 * (DeciderStore.hold), so the store is the one root of trust.
 */
export interface RelayOffer {
  url: string;
  token: string;
}

/**
 * A change feed that one node can relay to the others (fleet/change-relay.ts),
 * so that the store notifies one listener instead of every node. The wire
 * form is one line per announcement, as the store's own notification
 * carries it, plus `{"k":"mark","m":…}` lines: the feed has heard every
 * change a mark's snapshot sees, and every line before a mark came first.
 */
export interface RelayableFeed extends ChangeFeed {
  /** Whether this node hears the store itself now (a relay serves only then). */
  listening(): boolean;
  /** Each line heard, in the order heard; null when the listening connection was lost (relayed streams must end: they missed changes). */
  tap(fn: (line: string | null) => void): () => void;
  /** Checks its own connection now; the answer moves the mark, which the taps hear as a mark line. */
  beat(): void;
  /**
   * Hands this feed over to a relay whose lines, from one just after the
   * relay took this node on, are given to `relayed`: the feed stops
   * listening itself, without a change lost or told twice. False when it
   * cannot now (its own connection is down, or the relay was lost meanwhile).
   */
  startRelayed(): Promise<boolean>;
  /** One line from the relay, in the relay's order. */
  relayed(line: string): void;
  /** The relay's stream ended or went silent: listen again, reading back what was missed since the last mark. */
  relayLost(err: Error): void;
}
