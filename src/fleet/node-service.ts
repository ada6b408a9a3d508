import { NotFoundError } from '../model/errors.js';
import type { Node } from '../model/node.js';
import type { Principal } from '../model/principal.js';
import type { JobRecord, NodeRecord, Store } from '../store/store.js';

/**
 * The fleet's nodes as the API shows them (state, heartbeat age, GPUs and
 * the jobs holding them) and the admin's drain switch. A caller sees the
 * ids of its own jobs among the holders; an admin sees every holder.
 */
export class NodeService {
  constructor(
    private readonly store: Store,
    /** Told when a node's record changed here (this node reads its own again). */
    private readonly changed: () => void,
  ) {}

  async list(principal: Principal): Promise<Node[]> {
    const [nodes, holding, active] = await Promise.all([
      this.store.nodes.list(),
      this.store.jobs.holdingGpus(),
      this.store.jobs.activeByNode(),
    ]);
    return nodes.map((n) => view(n, holding, active.get(n.name) ?? 0, principal));
  }

  async get(principal: Principal, name: string): Promise<Node> {
    const [node, holding, active] = await Promise.all([
      this.store.nodes.get(name),
      this.store.jobs.holdingGpus(),
      this.store.jobs.active(name),
    ]);
    if (!node) throw new NotFoundError(`node ${name}`);
    return view(node, holding, active.length, principal);
  }

  /** Drained: running jobs finish, nothing new starts there. Undrained: it takes jobs again. */
  async setDrained(principal: Principal, name: string, drained: boolean): Promise<Node> {
    const updated = await this.store.nodes.setDrained(name, drained);
    if (!updated) throw new NotFoundError(`node ${name}`);
    this.changed();
    return this.get(principal, name);
  }
}

function view(n: NodeRecord, holding: readonly JobRecord[], running: number, principal: Principal): Node {
  const mine = holding.filter((j) => j.node === n.name);
  return {
    name: n.name,
    state: n.state,
    drained: n.drained,
    labels: { ...n.labels },
    heartbeatAgeSeconds: Math.max(0, Math.round(n.heartbeatAgeSeconds * 10) / 10),
    leaseSeconds: n.leaseSeconds,
    startedAt: n.startedAt,
    version: n.version,
    running,
    gpus: n.gpus.map((g) => ({
      index: g.index,
      uuid: g.uuid,
      name: g.name,
      memoryMiB: g.memoryMiB,
      allocated: mine.some((j) => j.gpus.includes(g.uuid)),
      holders: mine.filter((j) => j.gpus.includes(g.uuid) && (principal.isAdmin || j.owner === principal.owner)).map((j) => j.id),
    })),
  };
}
