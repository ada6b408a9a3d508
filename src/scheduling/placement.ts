import type { GpuAllocator } from '../gpu/allocator.js';
import type { SpecFieldError } from '../model/errors.js';
import type { GpuRequest, JobSpec } from '../model/job.js';
import type { JobRecord } from '../store/store.js';

/** A node as placement sees it: its name, its labels and what its GPUs could ever hold. */
export interface PlacementTarget {
  name: string;
  labels: Readonly<Record<string, string>>;
  /** Why the node's GPUs can never meet the request (of that model, if given), or null. */
  impossibleGpus: (req: GpuRequest, model?: string) => string | null;
  /** Whether the node has any GPU of the model. */
  hasModel: (model: string) => boolean;
}

/**
 * Why the job can never run on the node, by the spec field at fault, or
 * null when it can (now or once the node's GPUs are free). Only what never
 * changes while the node runs counts: its name, labels and inventory.
 */
export function misfit(spec: JobSpec, node: PlacementTarget): SpecFieldError | null {
  const p = spec.placement;
  if (p?.node !== undefined && p.node !== node.name) {
    return { path: 'placement.node', message: `asks for node "${p.node}", not "${node.name}"` };
  }
  for (const [key, value] of Object.entries(p?.nodeLabels ?? {})) {
    if (node.labels[key] !== value) {
      return { path: 'placement.nodeLabels', message: `node "${node.name}" has no label ${key}=${value}` };
    }
  }
  if (p?.gpuModel !== undefined && !node.hasModel(p.gpuModel)) {
    return { path: 'placement.gpuModel', message: `node "${node.name}" has no "${p.gpuModel}" GPU` };
  }
  const gpus = spec.gpus && node.impossibleGpus(spec.gpus, p?.gpuModel);
  return gpus ? { path: 'gpus', message: gpus } : null;
}

/**
 * Why no node of the fleet can ever run the job, or null when one can. With
 * one node the node's own reason is given as is; with several, each node's.
 */
export function unplaceable(spec: JobSpec, nodes: readonly PlacementTarget[]): SpecFieldError | null {
  const wanted = spec.placement?.node;
  if (wanted !== undefined && !nodes.some((n) => n.name === wanted)) {
    return {
      path: 'placement.node',
      message: `no node "${wanted}" is up in the fleet (nodes up: ${nodes.map((n) => `"${n.name}"`).join(', ') || 'none'})`,
    };
  }
  const misfits: (SpecFieldError & { node: string })[] = [];
  for (const node of nodes) {
    const why = misfit(spec, node);
    if (why === null) return null;
    misfits.push({ ...why, node: node.name });
  }
  if (misfits.length === 0) return { path: 'placement', message: 'no node is up in the fleet' };
  if (misfits.length === 1) return { path: misfits[0]!.path, message: misfits[0]!.message };
  // The field most nodes refuse on is the one to fix.
  const count = new Map<string, number>();
  for (const m of misfits) count.set(m.path, (count.get(m.path) ?? 0) + 1);
  const path = [...count.entries()].sort((a, b) => b[1] - a[1])[0]![0];
  return { path, message: `no node can ever run it: ${misfits.map((m) => `${m.node}: ${m.message}`).join('; ')}` };
}

/** `misfit` for one node, remembered per record (a record is immutable, and a node's name, labels and inventory do not change). */
export function misfitOn(node: PlacementTarget): (record: JobRecord) => SpecFieldError | null {
  const known = new WeakMap<JobRecord, SpecFieldError | null>();
  return (record) => {
    let why = known.get(record);
    if (why === undefined) known.set(record, (why = misfit(record.spec, node)));
    return why;
  };
}

/** A node with these GPUs, as placement sees it. */
export function placementTarget(name: string, labels: Readonly<Record<string, string>>, gpus: GpuAllocator): PlacementTarget {
  return {
    name,
    labels,
    impossibleGpus: (req, model) => gpus.impossible(req, model),
    hasModel: (model) => gpus.devices.some((d) => d.name.toLowerCase().includes(model.toLowerCase())),
  };
}
