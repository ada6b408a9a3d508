import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { GpuAllocator } from '../gpu/allocator.js';
import { KernelLogReader } from '../gpu/health/kernel-log.js';
import { HealthMonitor } from '../gpu/health/monitor.js';
import type { GpuHealthBook } from '../gpu/health/state.js';
import type { GpuDevice } from '../gpu/inventory.js';
import type { JobEventHub } from '../jobs/events.js';
import { isTerminal } from '../model/states.js';
import type { NodeRuns } from './node-runs.js';

/**
 * The GPU health monitor (GANTRY_GPU_HEALTH_INTERVAL_SECONDS; null when off
 * or there are no GPUs), and the rules that join it to this node's runs: every job holding a card
 * that turns unhealthy is stopped, its attempt failed with cause gpu_error
 * (its retry rules decide what follows); a card back in service wakes the queue.
 */
export function watchGpuHealth(o: {
  config: Config;
  devices: readonly GpuDevice[];
  gpus: GpuAllocator;
  health: GpuHealthBook;
  runs: NodeRuns;
  events: JobEventHub;
  log: Logger;
}): HealthMonitor | null {
  const { config, devices, gpus, health, runs, events, log } = o;
  const name = (uuid: string) => `GPU ${devices.find((d) => d.uuid === uuid)?.index ?? '?'} (${uuid})`;
  health.onFault((uuid, fault) => {
    for (const h of gpus.holders(uuid)) {
      void runs.interrupt(h.jobId, { cause: 'gpu_error', reason: `${name(uuid)} is unhealthy: ${fault.reason} [${fault.code}]` });
    }
  });
  health.onChange(() => events.publishQueueChanged());
  // A smoke job's end decides its card: healthy again when it succeeded.
  events.onAnyStatus((job) => {
    if (!isTerminal(job.state)) return;
    void health
      .smokeEnded(job.id, job.state === 'succeeded', job.reason)
      .catch((err: unknown) => log.error({ err, jobId: job.id }, 'could not record the end of a GPU smoke job'));
  });
  const { intervalSeconds, kernelLog, appXids } = config.gpus.health;
  if (intervalSeconds === 0 || devices.length === 0) return null;
  return new HealthMonitor({
    health,
    intervalMs: intervalSeconds * 1000,
    nvidiaSmi: 'nvidia-smi',
    kernelLog: kernelLog === null ? null : new KernelLogReader(kernelLog),
    appXids: new Set(appXids),
    log,
    // The job's own CUDA error ends it (exit_code): the card stays in service, the log says which job it was.
    onApplicationXid: (uuid, event) =>
      log.warn({ uuid, xid: event, jobs: gpus.holders(uuid).map((h) => h.jobId) }, `application Xid ${event.xid} on ${name(uuid)}`),
  });
}
