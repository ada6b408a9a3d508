import { z } from 'zod';

export const TeamSchema = z
  .object({
    name: z.string(),
    owners: z.array(z.string()).describe('Token owners whose jobs count against these limits together.'),
    limits: z
      .object({
        maxQueued: z.number().int().nullable(),
        maxRunning: z.number().int().nullable(),
        gpus: z.number().int().nullable().describe('Its nominal share of GPUs.'),
        borrowGpus: z.number().int().nullable().describe('GPUs beyond `gpus` it may hold while no other team is owed its own.'),
        share: z.number().describe('Its fair-share weight: the `share` set, else its `gpus`, else 1.'),
      })
      .describe('As GANTRY_QUOTAS_FILE sets them; null: no limit.'),
    use: z.object({
      queuedJobs: z.number().int().describe('Jobs queued that no node has taken, fleet-wide.'),
      runningJobs: z.number().int().describe('Jobs a node has taken and not ended (pulling, starting, running).'),
      gpus: z.number().int().describe('GPUs its taken jobs hold or are being given (a shared card counts as one).'),
      borrowedGpus: z.number().int().describe('GPUs held beyond its nominal `gpus` (0 when `gpus` is not set).'),
    }),
    fairShare: z.object({
      gpuSeconds: z.number().describe('Its recent GPU use: GPU-seconds, each halving in weight every half-life.'),
      rank: z.number().describe('gpuSeconds over its share: within a priority, the lowest rank goes first.'),
    }),
  })
  .meta({ id: 'Team' });

export const FairShareUnitSchema = z
  .object({
    unit: z.string().describe('`team:<name>`, or `owner:<owner>` for an owner in no team.'),
    gpuSeconds: z.number(),
    share: z.number(),
    rank: z.number(),
  })
  .meta({ id: 'FairShareUnit' });

export const TeamListSchema = z
  .object({
    items: z.array(TeamSchema).describe('The teams of GANTRY_QUOTAS_FILE, as last read (a reload on SIGHUP replaces them).'),
    fairShare: z.object({
      halfLifeSeconds: z.number().describe('GANTRY_FAIR_SHARE_HALF_LIFE_SECONDS; 0: fair share is off and the queue is FIFO.'),
      units: z.array(FairShareUnitSchema).describe('Every unit with recent GPU use, teams and owners in no team alike, most used first.'),
    }),
  })
  .meta({ id: 'TeamList' });

export type Team = z.infer<typeof TeamSchema>;
export type FairShareUnit = z.infer<typeof FairShareUnitSchema>;
export type TeamList = z.infer<typeof TeamListSchema>;
