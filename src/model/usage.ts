import { z } from 'zod';

/** The longest window GET /v1/usage reads at once (it reads every job that lived in it). */
export const USAGE_MAX_DAYS = 366;
/** The window when none is given: the last 30 days. */
export const USAGE_DEFAULT_DAYS = 30;

const DAY_MS = 86_400_000;

export const UsageQuerySchema = z
  .object({
    owner: z
      .string()
      .min(1)
      .max(128)
      .optional()
      .describe('Only this owner. An admin may name anyone (unset: every owner); any other token only itself (unset: itself).'),
    from: z.iso
      .datetime({ offset: true })
      .optional()
      .describe(`Start of the window, included (RFC 3339); unset: ${USAGE_DEFAULT_DAYS} days before \`to\`.`),
    to: z.iso.datetime({ offset: true }).optional().describe('End of the window, excluded (RFC 3339); unset: now.'),
    format: z.enum(['json', 'csv']).optional().describe('`csv` answers text/csv, as `Accept: text/csv` does; unset: as Accept asks.'),
  })
  .strict()
  .refine((q) => q.from === undefined || q.to === undefined || Date.parse(q.from) < Date.parse(q.to), {
    message: 'must be later than from',
    path: ['to'],
  })
  .refine((q) => q.from === undefined || q.to === undefined || Date.parse(q.to) - Date.parse(q.from) <= USAGE_MAX_DAYS * DAY_MS, {
    message: `the window may span at most ${USAGE_MAX_DAYS} days`,
    path: ['from'],
  });
export type UsageQuery = z.infer<typeof UsageQuerySchema>;

export const UsageByModelSchema = z
  .object({
    model: z
      .string()
      .describe('The card’s name as its node’s inventory gives it ("NVIDIA H200"), or "unknown" for a card no inventory lists now.'),
    weight: z.number().describe('The weight GANTRY_GPU_MODEL_WEIGHTS gives the model (1 when none matches, and for "unknown").'),
    gpuSeconds: z.number(),
    gpuHours: z.number(),
    weightedGpuHours: z.number().describe('gpuHours × weight.'),
  })
  .meta({ id: 'UsageByModel' });

export const OwnerUsageSchema = z
  .object({
    owner: z.string(),
    gpuSeconds: z.number().describe('Σ over attempts of (seconds its container ran inside the window × GPUs it held).'),
    gpuHours: z.number().describe('gpuSeconds / 3600.'),
    weightedGpuHours: z.number().describe('Σ of byModel’s weightedGpuHours.'),
    jobs: z.number().int().describe('Jobs that ran on GPUs inside the window.'),
    attempts: z.number().int().describe('Their attempts that ran on GPUs inside the window.'),
    byModel: z.array(UsageByModelSchema),
  })
  .meta({ id: 'OwnerUsage' });

export const UsageReportSchema = z
  .object({
    from: z.string().describe('Start of the window, included.'),
    to: z.string().describe('End of the window, excluded.'),
    items: z.array(OwnerUsageSchema).describe('One per owner with GPU time in the window, most GPU-seconds first.'),
  })
  .meta({ id: 'UsageReport' });
export type UsageReport = z.infer<typeof UsageReportSchema>;
export type OwnerUsage = z.infer<typeof OwnerUsageSchema>;

/** The window a query asks for, defaults filled in, as ISO times. */
export function usageWindow(q: Pick<UsageQuery, 'from' | 'to'>, nowMs: number): { from: string; to: string } {
  const toMs = q.to === undefined ? nowMs : Date.parse(q.to);
  const fromMs = q.from === undefined ? toMs - USAGE_DEFAULT_DAYS * DAY_MS : Date.parse(q.from);
  return { from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString() };
}
