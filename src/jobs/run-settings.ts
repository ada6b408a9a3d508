import type { Config } from '../config.js';
import type { JobSpec } from '../model/job.js';
import { type RunSettings, RunSettingsSchema } from '../model/run-settings.js';

/** The configuration a job's run settings default to. */
export type RunDefaults = Pick<Config, 'policy' | 'stopGraceSeconds'>;

/**
 * A spec's run settings: what the spec says, else the operator's default.
 * Resolved once, at submit, and stored with the job, so the job runs as
 * submitted whatever the configuration of the node that runs it, then or
 * after a restart.
 */
export function resolveRunSettings(spec: JobSpec, d: RunDefaults): RunSettings {
  return RunSettingsSchema.parse({
    timeoutSeconds: spec.timeoutSeconds ?? d.policy.defaultTimeoutSeconds,
    memoryMiB: spec.resources?.memoryMiB ?? d.policy.defaultMemoryMiB,
    user: spec.user ?? d.policy.defaultUser,
    pullPolicy: spec.pullPolicy ?? d.policy.pullPolicy,
    stopGraceSeconds: spec.stopGraceSeconds ?? d.stopGraceSeconds,
  });
}
