import { z } from 'zod';
import { type GpuTelemetry, GpuTelemetrySchema } from './gpu-telemetry.js';

/**
 * Why an attempt ended, as a retry rule names it:
 * - `exit_code`: the container exited non-zero (not OOM-killed);
 * - `oom`: the kernel killed it for exceeding its memory limit;
 * - `timeout`: it ran past `timeoutSeconds` and was stopped;
 * - `image_pull`: its image could not be had (the pull failed, or the
 *   image is missing under pull policy "never");
 * - `node_lost`: the node running it stopped renewing its lease;
 * - `preempted`: Gantry stopped it to give its GPUs to a job with a better
 *   claim on them (its owner's share, or a higher priority);
 * - `gpu_error`: a GPU it held was found faulty;
 * - `idle`: it held its GPUs unused for longer than the policy allows;
 * - `memory_exceeded`: sharing a card, it used more of the card's memory
 *   than it declared.
 */
export const RETRY_CAUSES = [
  'exit_code',
  'oom',
  'timeout',
  'image_pull',
  'node_lost',
  'preempted',
  'gpu_error',
  'idle',
  'memory_exceeded',
] as const;
export type RetryCause = (typeof RETRY_CAUSES)[number];

/**
 * Causes that are the infrastructure's doing, not the job's: their retries
 * are counted apart from the job's own (retry-policy.ts).
 */
export const INFRA_CAUSES: ReadonlySet<RetryCause> = new Set(['node_lost', 'preempted', 'gpu_error']);

export const RetryCauseSchema = z.enum(RETRY_CAUSES).meta({
  id: 'RetryCause',
  description:
    'Why an attempt ended: exit_code (non-zero exit), oom (OOM-killed), timeout (ran past timeoutSeconds), image_pull (the image could not be had), ' +
    'node_lost (its node stopped renewing its lease), preempted (stopped for a job with a better claim on its GPUs; always retried, free), ' +
    'gpu_error (a GPU it held was found faulty), idle (it held its GPUs unused too long), memory_exceeded (it used more of a shared card than it declared).',
});

export const ATTEMPT_OUTCOMES = ['succeeded', 'failed', 'cancelled', 'timed_out'] as const;
export type AttemptOutcome = (typeof ATTEMPT_OUTCOMES)[number];

/** How one attempt ended, as the run (or the fleet settling a lost node) reports it; the store adds the rest. */
export interface AttemptEnd {
  outcome: AttemptOutcome;
  /** Null for a success, a cancel, or a failure no retry rule can name (a policy refusal, an internal error). */
  cause: RetryCause | null;
  /** Whether the job was queued again as a next attempt. */
  retried: boolean;
  reason: string | null;
  exitCode: number | null;
  finishedAt: string;
}

/**
 * An ended attempt as stored on its job. The store writes it in the same
 * compare-and-set as the job's end or requeue, taking the attempt's number,
 * node, GPUs and start from the job's row as they were, and `logEnd` (the
 * last log sequence number the job had then) from its log.
 */
export interface AttemptRecord extends AttemptEnd {
  attempt: number;
  node: string | null;
  gpus: string[];
  startedAt: string | null;
  /** The job's last log seq when the attempt ended (0 for none): its lines are those after the previous attempt's logEnd, up to this. */
  logEnd: number;
  /**
   * The job's GPU telemetry summary as it was when the attempt ended: this
   * attempt's only if its `attempt` says so (an attempt never sampled finds
   * an earlier one's). Absent from attempts stored before telemetry existed.
   */
  gpuTelemetry?: GpuTelemetry | null;
}

export const AttemptSchema = z
  .object({
    attempt: z.number().int().min(1),
    node: z.string().nullable().describe('The node it ran on.'),
    gpus: z.array(z.string()).describe('UUIDs of the GPUs it had.'),
    outcome: z.enum(ATTEMPT_OUTCOMES).describe('How the attempt ended (a retried attempt ended failed or timed_out).'),
    cause: RetryCauseSchema.nullable().describe(
      'Why it ended, as retry rules name it; null for a success, a cancel, or a failure no rule can name.',
    ),
    retried: z.boolean().describe('Whether Gantry queued the job again as the next attempt.'),
    reason: z.string().nullable(),
    exitCode: z.number().int().nullable(),
    startedAt: z.string().nullable().describe('When its container started; null if it never did.'),
    finishedAt: z.string(),
    firstLogSeq: z
      .number()
      .int()
      .nullable()
      .describe('The first log line (seq) of this attempt; null when it wrote none. GET …/logs?attempt=N shows its lines.'),
    lastLogSeq: z.number().int().nullable().describe('The last log line (seq) of this attempt; null when it wrote none.'),
    gpuTelemetry: GpuTelemetrySchema.nullable().describe("What Gantry's GPU sampler measured of this attempt; null when nothing was."),
  })
  .meta({
    id: 'Attempt',
    example: {
      attempt: 1,
      node: 'gpu-host-1',
      gpus: ['GPU-3c5a1b3e-9a44-4f2f-8d1e-0f6b7d2a9c11'],
      outcome: 'failed',
      cause: 'exit_code',
      retried: true,
      reason: 'exited with code 3',
      exitCode: 3,
      startedAt: '2026-01-05T09:30:01.250Z',
      finishedAt: '2026-01-05T09:31:02.000Z',
      firstLogSeq: 1,
      lastLogSeq: 12,
      gpuTelemetry: null,
    },
  });
export type Attempt = z.infer<typeof AttemptSchema>;
