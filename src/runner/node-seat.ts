/** This node's seat in the fleet (a single host is a fleet of one), as the scheduler needs it. */
export interface NodeSeat {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The epoch this process registered with, or null while it holds no lease (not yet registered, fenced, or not renewing in time). */
  epoch(): number | null;
  /** Whether an admin drained the node: it starts nothing new. */
  drained(): boolean;
  /** How long ago the last renewal of the lease that succeeded in time was sent (ms), or null before the first. */
  sinceRenewed(): number | null;
  /** Whether other nodes share the store: a job this node can never run then waits for one that can, instead of failing. */
  readonly shared: boolean;
}
