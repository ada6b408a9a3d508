import { z } from 'zod';

/** What the sampler saw go wrong with a job's use of its GPUs. */
export const GPU_WARNING_KINDS = ['idle', 'memory_exceeded'] as const;
export type GpuWarningKind = (typeof GPU_WARNING_KINDS)[number];

export const GpuWarningSchema = z
  .object({
    kind: z
      .enum(GPU_WARNING_KINDS)
      .describe('idle: its cards stayed at ~0% utilisation too long; memory_exceeded: sharing a card, it used more than it declared.'),
    time: z.string().describe('When the sampler saw it.'),
    message: z.string(),
    action: z
      .enum(['warn', 'end'])
      .describe("What the operator's policy did: only report it, or end the job (cause idle or memory_exceeded)."),
  })
  .meta({ id: 'GpuWarning' });
export type GpuWarning = z.infer<typeof GpuWarningSchema>;

/**
 * One attempt's GPU use as the sampler measured it. Stored on the job (with
 * the run's fence) at every sample, so it is readable while the attempt runs,
 * and copied into the attempt's record when it ends.
 */
export const GpuTelemetrySchema = z
  .object({
    attempt: z.number().int().min(1).describe('The attempt these figures are of.'),
    samples: z.number().int().min(0).describe('How many times the job’s cards were sampled.'),
    firstSampleAt: z.string().nullable(),
    lastSampleAt: z.string().nullable(),
    gpuSeconds: z
      .number()
      .describe(
        'Cards held × seconds, from the container start to its end (to the last sample while it runs); for a sharing job, the shared card counts whole.',
      ),
    sharedCard: z
      .boolean()
      .describe(
        'The job shares its card: nvidia-smi cannot split utilisation or power by process, so those figures (and energy) are null, and memory is its own processes’ only.',
      ),
    meanUtilizationPct: z.number().nullable().describe('Mean over samples of the mean utilisation of its cards (null for a shared card).'),
    peakUtilizationPct: z.number().nullable().describe('Highest sampled utilisation of any of its cards (null for a shared card).'),
    peakMemoryMiB: z
      .number()
      .nullable()
      .describe('Highest sampled memory in use, summed over its cards (on a shared card: its own processes).'),
    energyJoules: z
      .number()
      .nullable()
      .describe('Power draw of its cards integrated over the sampled time (trapezoids between samples); null for a shared card.'),
    declaredMemoryMiB: z.number().int().nullable().describe('The memory it declared per card when sharing; null for exclusive use.'),
    overDeclaredMemory: z.boolean().describe('Sharing a card, it was seen using more memory than it declared.'),
    warnings: z.array(GpuWarningSchema).describe('What the sampler warned about, oldest first.'),
  })
  .meta({
    id: 'GpuTelemetry',
    example: {
      attempt: 1,
      samples: 72,
      firstSampleAt: '2026-01-05T09:30:10.000Z',
      lastSampleAt: '2026-01-05T09:42:00.000Z',
      gpuSeconds: 732.65,
      sharedCard: false,
      meanUtilizationPct: 91.4,
      peakUtilizationPct: 100,
      peakMemoryMiB: 70312,
      energyJoules: 412870,
      declaredMemoryMiB: null,
      overDeclaredMemory: false,
      warnings: [],
    },
  });
export type GpuTelemetry = z.infer<typeof GpuTelemetrySchema>;

/** One card of a job at one sample, as the live stream and /metrics show it. */
export const GpuSampleCardSchema = z.object({
  uuid: z.string(),
  utilizationPct: z.number().nullable().describe('The card’s utilisation; null on a shared card or when nvidia-smi could not say.'),
  memoryUsedMiB: z.number().nullable().describe('Memory the job uses on the card (its own processes on a shared card).'),
  powerWatts: z.number().nullable().describe('The card’s power draw; null on a shared card or when nvidia-smi could not say.'),
});

export const GpuSampleSchema = z
  .object({
    jobId: z.string(),
    time: z.string(),
    gpus: z.array(GpuSampleCardSchema),
    summary: GpuTelemetrySchema,
  })
  .meta({ id: 'GpuSample', description: 'One sample of a running job’s GPUs, with its summary so far.' });
export type GpuSample = z.infer<typeof GpuSampleSchema>;
