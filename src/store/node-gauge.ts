import type { NodeState } from '../model/node.js';

/** A node's state and the counts its metrics report (NodeStore.gauges). */
export interface NodeGauge {
  readonly name: string;
  readonly state: NodeState;
  readonly drained: boolean;
  /** Measured by the store's clock. */
  readonly heartbeatAgeSeconds: number;
  /** Cards in the node's inventory. */
  readonly gpus: number;
  /** Cards of its inventory held by at least one job pulling, starting or running. */
  readonly gpusAllocated: number;
  /** Jobs it holds pulling, starting or running. */
  readonly runningJobs: number;
}
