import { z } from 'zod';

/** A node's name (GANTRY_NODE_NAME): a hostname-like word of at most 253 characters. */
export const NODE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$/;

/** A GPU as a node reports it to the fleet. */
export const NodeGpuSchema = z
  .object({
    index: z.number().int(),
    uuid: z.string(),
    name: z.string().describe('The model, as nvidia-smi names it ("NVIDIA H200"), or "static".'),
    memoryMiB: z.number().int(),
  })
  .meta({ id: 'NodeGpu' });
export type NodeGpu = z.infer<typeof NodeGpuSchema>;

/**
 * `up`: the node renews its lease. `lost`: its lease expired; its unfinished
 * jobs were settled and it may take no job until its Gantry registers again.
 */
export const NODE_STATES = ['up', 'lost'] as const;
export type NodeState = (typeof NODE_STATES)[number];

export const NodeSchema = z
  .object({
    name: z.string(),
    state: z.enum(NODE_STATES),
    drained: z.boolean().describe('Running jobs finish; nothing new starts on the node.'),
    labels: z.record(z.string(), z.string()),
    heartbeatAgeSeconds: z.number().describe('Seconds since the node last renewed its lease.'),
    leaseSeconds: z.number().int(),
    startedAt: z.string().describe('When the node’s current Gantry process registered.'),
    version: z.string(),
    gpus: z.array(
      NodeGpuSchema.extend({
        allocated: z.boolean().describe('Whether any job holds the GPU now, whoever owns it.'),
        holders: z.array(z.string()).describe('Ids of the jobs holding the GPU (only those the caller may see).'),
      }),
    ),
    running: z.number().int().describe('Jobs the node runs now.'),
  })
  .meta({ id: 'Node' });
export type Node = z.infer<typeof NodeSchema>;
