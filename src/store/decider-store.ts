import type { NodeGpu } from '../model/node.js';
import type { WaitInfo } from '../model/queue.js';
import type { RelayOffer } from './change-feed.js';

/*
 * What the fleet's one decider (GANTRY_FLEET_DECIDER=elected) keeps in the
 * store: its lease and term, the assignments and preemptions it writes for
 * the nodes, and what each node reports of itself. Part of the Store
 * interface (store.ts, Store.decider).
 */

/** GPUs as a node holds them for one job. */
export interface HeldGpus {
  uuids: string[];
  /** Declared memory per card when sharing; null for exclusive use. */
  memoryMiB: number | null;
}

/** One job the fleet's decider gave a node, under its term: the node claims and runs it on these GPUs, or refuses it. */
export interface Assignment {
  jobId: string;
  node: string;
  gpus: HeldGpus | null;
  term: number;
}

/** The runs a node stops for one waiting job; the fleet holds at most one for each waiting job. */
export interface FleetPreemption {
  waiter: string;
  node: string;
  victims: { jobId: string; attempt: number; rule: string; reason: string }[];
  term: number;
}

/** A run as its node reports it to the decider. */
export interface ReportedRun {
  jobId: string;
  attempt: number;
  owner: string;
  priority: number;
  preemptible: boolean;
  startedAt: number;
  endsBy: number | null;
  gpus: number;
  preempted: boolean;
}

/** What a node's process tells the decider: whether it takes jobs, what it runs and which of its GPUs it holds or withholds. */
export interface NodeReport {
  node: string;
  epoch: number;
  /** Why the node takes no job now, or null when it does. */
  idle: WaitInfo | null;
  maxRunning: number;
  runs: ReportedRun[];
  holdings: ({ jobId: string } & HeldGpus)[];
  /** Cards given to no new job (unhealthy or drained), with why. */
  withheld: { uuid: string; why: string }[];
}

/** The fleet as the decider reads it, in one snapshot: up nodes whose current process reported, and what is outstanding. */
export interface FleetSnapshot {
  nodes: { name: string; labels: Readonly<Record<string, string>>; gpus: readonly NodeGpu[]; report: NodeReport }[];
  assignments: Assignment[];
  preemptions: FleetPreemption[];
}

/** What one decider pass writes. */
export interface FleetDecisions {
  assign: Omit<Assignment, 'term'>[];
  preempt: Omit<FleetPreemption, 'term'>[];
  /** Assignments taken back (their node is no longer up): the jobs are free to assign again. */
  revoke: string[];
  /** Waiting jobs whose preemption is over (its victims ended, or the job left the queue). */
  settled: string[];
  /** Why the queued jobs wait, the fleet's view (serialized by the decider), or null when unchanged. */
  outcome: string | null;
}

/**
 * The fleet's one decider. The lease is a row timed by the store's clock;
 * each holder gets a term, bumped on every change of holder, and every write
 * of a pass carries the term and is refused, whole, once another holder
 * took the lease: two deciders never both write. Nodes report what they
 * hold and apply their own assignments; a node's report and its removal of
 * the assignments it consumed are one write, so the decider never sees a
 * job neither assigned nor held.
 */
/**
 * A try for the decider's lease: the term now held; or how long another
 * holder's lease still runs (ms, by the store's clock), and where that
 * holder relays the change feed, if it does.
 */
export type LeaseTry = { term: number } | { term: null; heldForMs: number; relay: RelayOffer | null };

export interface DeciderStore {
  /**
   * Takes or renews the lease for this process of the node, for
   * `leaseSeconds` by the store's clock: the term held; or, while another
   * holds an unexpired lease, how long it still runs (0 when the node is not
   * up at that epoch). A newer process of the holder's node takes it over at once.
   * The holder publishes `relay` with its lease (null: it relays nothing).
   */
  hold(node: { name: string; epoch: number }, leaseSeconds: number, relay?: RelayOffer | null): Promise<LeaseTry>;
  /** Ends the lease of that term now (a clean shutdown) and says so on the change feed, so another node takes over at once. */
  resign(node: string, term: number): Promise<void>;
  snapshot(): Promise<FleetSnapshot>;
  /** Writes one pass's decisions, all or nothing: false (nothing written) unless the term is still this node's and unexpired. */
  decide(term: number, node: { name: string; epoch: number }, decisions: FleetDecisions): Promise<boolean>;
  /**
   * The node's report, and the removal of the assignments it consumed
   * (applied or refused), together; false when the node is not up at that
   * epoch (nothing written).
   */
  report(report: NodeReport, consumed: readonly { jobId: string; term: number }[]): Promise<boolean>;
  /** The node's outstanding assignments, the preemptions it is to apply, and the fleet's outcome. */
  assigned(node: string): Promise<NodeAssignments>;
}

/** What a node's pass reads of the decider's work. */
export interface NodeAssignments {
  /** Oldest first. */
  assignments: Assignment[];
  preemptions: FleetPreemption[];
  /** The fleet's view of why queued jobs wait, as the decider last wrote it, or null. */
  outcome: string | null;
}
