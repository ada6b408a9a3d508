import { z } from 'zod';
import { PullPolicySchema } from './job.js';

/**
 * How a job runs, with every default the spec left open filled in from the
 * operator's configuration once, at submit, and stored with the job: a
 * restart with other defaults never changes how a job already submitted
 * runs, and no reader resolves a default itself. Never shown by the API.
 */
export const RunSettingsSchema = z
  .object({
    /** Seconds from the container's start to its deadline. */
    timeoutSeconds: z.number().int().min(1),
    /** The container's memory limit. */
    memoryMiB: z.number().int().min(4),
    /** Who the container runs as ("user", "uid" or "uid:gid"). */
    user: z.string().min(1),
    pullPolicy: PullPolicySchema,
    /** Seconds from SIGTERM to SIGKILL when the job is stopped (cancel, timeout, interrupt). */
    stopGraceSeconds: z.number().int().min(0),
  })
  .strict();

export type RunSettings = z.infer<typeof RunSettingsSchema>;
