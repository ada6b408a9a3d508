import type { Config } from '../config.js';
import type { GpuInjection } from '../gpu/inject.js';
import type { ResolvedMount } from '../jobs/policy.js';
import { driverLogMaxMiB } from '../logs/capture.js';
import type { JobSpec } from '../model/job.js';
import type { RunSettings } from '../model/run-settings.js';
import { type ContainerSpec, MANAGED_LABELS } from '../runtime/runtime.js';

export interface ContainerPlan {
  jobId: string;
  /** Which attempt of the job the container runs. */
  attempt: number;
  owner: string;
  spec: JobSpec;
  /** How the job runs, as resolved at its submit. */
  settings: RunSettings;
  /** The policy's resolved mounts (sources checked and resolved on the host), and the run's secret files. */
  mounts: ResolvedMount[];
  /** Variables Gantry sets for the run: the secrets delivered as environment variables, the preemption notice's path. */
  runEnv: Record<string, string>;
  gpu: GpuInjection;
}

/**
 * A job's container, from a spec the policy allowed: only the spec's
 * checked values, the operator's limits and Gantry's own labels and GPU
 * injection. Gantry's labels are set last, so a job cannot forge them.
 */
export function containerSpec(plan: ContainerPlan, cfg: Config): ContainerSpec {
  const { spec } = plan;
  const { policy } = cfg;
  const memoryBytes = plan.settings.memoryMiB * 1024 * 1024;
  const network = spec.network ?? 'none';
  return {
    // One name per attempt: the engine refuses a second container of the same
    // attempt, whatever the timing; a later attempt never collides with the
    // leftover of an earlier one.
    name: plan.attempt === 1 ? `gantry-${plan.jobId}` : `gantry-${plan.jobId}-attempt-${plan.attempt}`,
    image: spec.image,
    command: spec.command,
    entrypoint: spec.entrypoint,
    env: { ...(spec.env ?? {}), ...(spec.privateEnv ?? {}), ...plan.runEnv, ...plan.gpu.env, GANTRY_ATTEMPT: String(plan.attempt) },
    workdir: spec.workdir,
    // Never the image's own user, which is root for most images.
    user: plan.settings.user,
    readonlyRootfs: policy.readonlyRootfs,
    labels: {
      ...(spec.labels ?? {}),
      [MANAGED_LABELS.managed]: 'true',
      [MANAGED_LABELS.jobId]: plan.jobId,
      [MANAGED_LABELS.attempt]: String(plan.attempt),
      [MANAGED_LABELS.owner]: plan.owner,
    },
    network,
    memoryBytes,
    nanoCpus: spec.resources?.cpus !== undefined ? Math.round(spec.resources.cpus * 1e9) : 0,
    shmBytes: (spec.resources?.shmMiB ?? 64) * 1024 * 1024,
    pidsLimit: policy.pidsLimit,
    capabilities: policy.capabilities,
    mounts: [...plan.mounts.map((m) => (m.type === 'bind' ? { ...m, propagation: 'rprivate' as const } : m)), ...plan.gpu.mounts],
    devices: plan.gpu.devices,
    deviceRequests: plan.gpu.deviceRequests,
    // Big enough that Docker keeps a whole capped log (its per-line overhead
    // included), so a restarted Gantry can resume capture from the driver
    // without a gap.
    log: { driver: cfg.logs.driver, maxSizeMiB: driverLogMaxMiB(cfg.logs.maxBytesPerJob) },
  };
}
