import type { Config } from '../config.js';
import type { Allocation } from '../gpu/allocator.js';
import { explainGpuError, gpuInjection } from '../gpu/inject.js';
import type { GpuDevice } from '../gpu/inventory.js';
import { checkPolicy, type PolicyDecision } from '../jobs/policy.js';
import type { JobService } from '../jobs/service.js';
import { type ContainerRuntime, isUnreachable } from '../runtime/runtime.js';
import { type Fence, type JobRecord, runSettings } from '../store/store.js';
import { containerSpec } from './container-spec.js';
import { JobFailure } from './hooks/hook.js';
import type { RunHooks } from './hooks/run-hooks.js';
import type { ImagePuller } from './images.js';
import type { RunState } from './run-state.js';
import type { RunWriter } from './run-writer.js';

export interface PrepareContext {
  config: Config;
  images: ImagePuller;
  jobs: JobService;
  runtime: ContainerRuntime;
  devices: readonly GpuDevice[];
  record: JobRecord;
  fence: Fence;
  state: RunState;
  writer: RunWriter;
  hooks: RunHooks;
}

/**
 * What preparing a job from the queue came to: its container, created; a
 * cancel or an interruption recorded meanwhile (`when` says at which
 * point); the job ended meanwhile by another hand; or the engine away
 * before anything of the job existed in it.
 */
export type Prepared =
  | { kind: 'created'; containerId: string }
  | { kind: 'stopped'; when: string }
  | { kind: 'taken' }
  | { kind: 'engine_away'; error: Error };

/**
 * The run's first phase: the policy, the image (pulled when it must be,
 * with the job 'pulling' and its progress stored), the hooks' additions,
 * and the container created.
 */
export async function prepareContainer(c: PrepareContext, alloc: Allocation | null): Promise<Prepared> {
  try {
    return await prepare(c, alloc);
  } catch (err) {
    if (isUnreachable(err)) return { kind: 'engine_away', error: err as Error };
    throw err;
  }
}

async function prepare(c: PrepareContext, alloc: Allocation | null): Promise<Prepared> {
  const { config, images, jobs, record, fence, writer } = c;
  const { spec } = record;
  const stopped = () => c.state.cancelled || c.state.interruption !== null;
  // The policy may have changed since submit (a restart with another
  // config), and host paths may have: check before any pull, and again
  // right before the container is created.
  policyAtStart(c);
  const gpuPatch = { gpus: alloc?.uuids ?? [], gpuMemoryMiB: alloc?.memoryMiB ?? null };
  if (stopped()) return { kind: 'stopped', when: 'before it started' };
  if (await images.needsPull(spec.image, runSettings(record).pullPolicy)) {
    if (!(await writer.step('pulling', { ...gpuPatch, pullStatus: 'starting pull', reason: null }))) return { kind: 'taken' };
    await images.pull(spec.image, (status, progress) => {
      void jobs.patch(record.id, { pullStatus: status, pullProgress: progress }, fence).catch(() => undefined);
    });
    if (stopped()) return { kind: 'stopped', when: 'while the image was pulled' };
    if (!(await writer.step('starting', { pullStatus: null, pullProgress: null }))) return { kind: 'taken' };
  } else if (!(await writer.step('starting', { ...gpuPatch, reason: null }))) return { kind: 'taken' };

  // A pull can take minutes, and a path swapped for a symlink meanwhile
  // must not reach the engine as the path that was checked before it.
  const { mounts } = policyAtStart(c);
  const added = await c.hooks.prestart();
  const devices = (alloc?.uuids ?? []).map((u) => c.devices.find((g) => g.uuid === u)!);
  const create = containerSpec(
    {
      jobId: record.id,
      attempt: fence.attempt,
      owner: record.owner,
      spec,
      settings: runSettings(record),
      mounts: [...mounts, ...added.mounts],
      runEnv: added.env,
      gpu: gpuInjection(config.gpus, devices, alloc?.memoryMiB ?? null),
    },
    config,
  );
  try {
    return { kind: 'created', containerId: await c.runtime.create(create) };
  } catch (err) {
    if (isUnreachable(err)) throw err;
    throw new JobFailure(`could not create the container: ${explainGpuError(config.gpus.driver, (err as Error).message)}`);
  }
}

function policyAtStart(c: PrepareContext): PolicyDecision {
  const decision = checkPolicy(c.record.spec, c.record.owner, c.config.policy, c.config.dockerSocket);
  if (decision.errors.length > 0) {
    throw new JobFailure(`refused by policy at start: ${decision.errors.map((e) => `body.${e.path}: ${e.message}`).join('; ')}`);
  }
  return decision;
}
