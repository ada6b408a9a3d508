import { z } from 'zod';

/**
 * Recent history the operator page draws: what the GPU sampler measured,
 * kept in bounded rings in the memory of the node that measured it
 * (gpu/telemetry/history.ts, scheduling/queue-history.ts). It is not stored:
 * a restart starts it afresh, and a node answers for its own cards only.
 */

export const HISTORY_MAX_HOURS = 24;

export const HistoryQuerySchema = z
  .object({
    hours: z.coerce
      .number()
      .positive()
      .max(HISTORY_MAX_HOURS)
      .default(4)
      .describe('Only the points of the last N hours (the rings hold about four at most).'),
  })
  .strict();

export const CardHolderSchema = z
  .object({
    jobId: z.string().nullable().describe("The job holding the card; null for another owner's job when the token is no admin's."),
    owner: z.string().nullable().describe("The job's owner; null as jobId is."),
  })
  .meta({ id: 'CardHolder' });
export type CardHolder = z.infer<typeof CardHolderSchema>;

export const CardPointSchema = z
  .object({
    time: z.string(),
    utilizationPct: z.number().nullable(),
    memoryUsedMiB: z.number().nullable().describe('Memory in use on the card, by any process.'),
    powerWatts: z.number().nullable(),
    holders: z.array(CardHolderSchema).describe('The running jobs of this node that held the card at the sample.'),
  })
  .meta({ id: 'CardPoint' });
export type CardPoint = z.infer<typeof CardPointSchema>;

export const GpuHistorySchema = z
  .object({
    node: z.string().describe('The node whose cards these are (each node samples its own).'),
    sampleSeconds: z.number().describe('GANTRY_GPU_SAMPLE_SECONDS; 0: sampling is off and the history stays empty.'),
    spacingSeconds: z.number().describe('At most one point per card is kept per this many seconds.'),
    items: z.array(
      z.object({
        uuid: z.string(),
        index: z.number().int(),
        name: z.string(),
        memoryMiB: z.number().int(),
        points: z.array(CardPointSchema).describe('Oldest first. Cards are sampled only while a GPU job runs on the node.'),
      }),
    ),
  })
  .meta({
    id: 'GpuHistory',
    example: {
      node: 'gpu-host-1',
      sampleSeconds: 10,
      spacingSeconds: 20,
      items: [
        {
          uuid: 'GPU-3c5a1b3e-9a44-4f2f-8d1e-0f6b7d2a9c11',
          index: 0,
          name: 'NVIDIA H200',
          memoryMiB: 143771,
          points: [
            {
              time: '2026-01-05T09:30:20.000Z',
              utilizationPct: 91,
              memoryUsedMiB: 70312,
              powerWatts: 612.4,
              holders: [{ jobId: '01JGZ6Q6W8R3T5V7X9Z1B3D5F7', owner: 'airflow' }],
            },
          ],
        },
      ],
    },
  });
export type GpuHistory = z.infer<typeof GpuHistorySchema>;

export const JobPointSchema = z
  .object({
    time: z.string(),
    attempt: z.number().int().min(1),
    utilizationPct: z.number().nullable().describe('Mean over its cards; null on a shared card.'),
    memoryUsedMiB: z.number().nullable().describe('Summed over its cards (its own processes on a shared card).'),
    powerWatts: z.number().nullable().describe('Summed over its cards; null on a shared card.'),
  })
  .meta({ id: 'JobPoint' });
export type JobPoint = z.infer<typeof JobPointSchema>;

export const JobTelemetryHistorySchema = z
  .object({
    jobId: z.string(),
    points: z
      .array(JobPointSchema)
      .describe(
        'Oldest first, from the node that ran it while that node has it in memory: a job of any length keeps at most 360 points, thinned evenly as it runs; empty after a restart or for a job sampled elsewhere.',
      ),
  })
  .meta({
    id: 'JobTelemetryHistory',
    example: {
      jobId: '01JGZ6Q6W8R3T5V7X9Z1B3D5F7',
      points: [{ time: '2026-01-05T09:30:20.000Z', attempt: 1, utilizationPct: 91, memoryUsedMiB: 70312, powerWatts: 612.4 }],
    },
  });
export type JobTelemetryHistory = z.infer<typeof JobTelemetryHistorySchema>;

export const QueuePointSchema = z
  .object({
    time: z.string(),
    queued: z.number().int().describe('Jobs queued fleet-wide, as this node knows the queue.'),
    gpuQueued: z.number().int().describe('Of them, jobs that ask for GPUs.'),
    longestWaitSeconds: z.number().describe('How long the job queued longest had waited (0 for an empty queue).'),
    meanWaitSeconds: z.number().describe('Mean time the queued jobs had waited (0 for an empty queue).'),
  })
  .meta({ id: 'QueuePoint' });
export type QueuePoint = z.infer<typeof QueuePointSchema>;

export const QueueHistorySchema = z
  .object({
    spacingSeconds: z.number().describe('One point per this many seconds.'),
    points: z.array(QueuePointSchema).describe('Oldest first; counts only, no job is named.'),
  })
  .meta({
    id: 'QueueHistory',
    example: {
      spacingSeconds: 30,
      points: [{ time: '2026-01-05T09:30:30.000Z', queued: 4, gpuQueued: 3, longestWaitSeconds: 812, meanWaitSeconds: 301.5 }],
    },
  });
export type QueueHistory = z.infer<typeof QueueHistorySchema>;
