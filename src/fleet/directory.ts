import { GpuAllocator } from '../gpu/allocator.js';
import type { SpecFieldError } from '../model/errors.js';
import type { JobSpec } from '../model/job.js';
import type { PlacementTarget } from '../scheduling/placement.js';
import { unplaceable } from '../scheduling/placement.js';
import type { NodeRecord, NodeStore } from '../store/store.js';

/** The longest the list of nodes is reused for submit checks, should a change of the fleet go unheard. */
const CACHE_MS = 60_000;

/**
 * The nodes of the fleet as submit sees them: which are up, and whether
 * any of them could ever run a spec. The list is read from the store and
 * kept until the fleet changes: what a submit check reads of a node (up
 * or not, labels, GPUs) changes only when it registers, is drained or is
 * declared lost, and each is heard (invalidate) from the change feed,
 * which counts its own reconnection as a change, or from this node's own
 * hand. Read afresh per submit, it would cost the fleet a read of every
 * node per submit.
 */
export class NodeDirectory {
  private cached: { at: number; targets: PlacementTarget[] } | null = null;

  constructor(private readonly nodes: NodeStore) {}

  /** The nodes changed (one joined, was lost, drained): read them again next time. */
  invalidate(): void {
    this.cached = null;
  }

  /** Why no node that is up could ever run the spec, or null when one could. */
  async placementProblem(spec: JobSpec): Promise<SpecFieldError | null> {
    return unplaceable(spec, await this.targets());
  }

  private async targets(): Promise<PlacementTarget[]> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < CACHE_MS) return this.cached.targets;
    const targets = (await this.nodes.list()).filter((n) => n.state === 'up').map(toTarget);
    this.cached = { at: now, targets };
    return targets;
  }
}

function toTarget(n: NodeRecord): PlacementTarget {
  const gpus = new GpuAllocator(n.gpus);
  return {
    name: n.name,
    labels: n.labels,
    impossibleGpus: (req, model) => gpus.impossible(req, model),
    hasModel: (model) => n.gpus.some((g) => g.name.toLowerCase().includes(model.toLowerCase())),
  };
}
