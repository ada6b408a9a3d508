import { z } from 'zod';

/**
 * Why a queued job waits, as a stable code a client can branch on (the
 * codes are listed in the schema); the text in the job's `reason` says the
 * same for people. `reserved_for:<id>` names the job holding the GPU
 * reservation this one waits behind, to that job's own owner only; every
 * other owner's job says `reserved` (a job with a better claim).
 */
export const WaitingSchema = z
  .object({
    code: z
      .string()
      .describe(
        "pending: not yet considered by a scheduling pass; backoff: a retry waits out its backoff (until estimatedStartAt); run_slot: every run slot is taken (GANTRY_MAX_RUNNING); quota: its team's limits (GANTRY_QUOTAS_FILE) hold it; gpus: its GPUs are not free (it holds the reservation); gpus_out_of_service: only GPUs out of service (unhealthy or drained, GET /v1/gpus) could run it; reserved_for:<id>: behind the GPU reservation of that job, one of the caller's own; reserved: behind the GPU reservation of another owner's job (a job with a better claim); not_here: the answering node can never run it, another may; node_drained, engine_unreachable, no_lease: the answering node takes no job now.",
      ),
    estimatedStartAt: z
      .string()
      .nullable()
      .describe(
        'When it starts at the latest if the jobs holding its GPUs run to their timeouts and nothing of higher priority arrives; null where that cannot be told.',
      ),
  })
  .meta({ id: 'Waiting', example: { code: 'gpus', estimatedStartAt: '2026-01-05T10:42:00.000Z' } });

export type Waiting = z.infer<typeof WaitingSchema>;

/** A wait as the queue knows it: the code and estimate the view shows, and the text of its `reason`. */
export interface WaitInfo extends Waiting {
  text: string;
}
