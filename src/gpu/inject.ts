import fs from 'node:fs';
import type Docker from 'dockerode';
import type { Config } from '../config.js';
import type { GpuDevice } from './inventory.js';

type HostConfig = Docker.HostConfig;

export interface GpuInjection {
  env: Record<string, string>;
  hostConfig: Pick<HostConfig, 'DeviceRequests' | 'Devices' | 'Mounts'>;
}

const CONTROL_DEVICES = ['/dev/nvidiactl', '/dev/nvidia-uvm', '/dev/nvidia-uvm-tools'];

/**
 * What a job's container gets for its GPUs, by GANTRY_GPU_DRIVER. Always
 * sets NVIDIA_VISIBLE_DEVICES (the allocated UUIDs, or `void` so that a
 * host whose default runtime is nvidia exposes nothing to a CPU job).
 */
export function gpuInjection(
  cfg: Config['gpus'],
  allocated: readonly GpuDevice[],
  sharedMemoryMiB: number | null,
  deviceExists: (path: string) => boolean = fs.existsSync,
): GpuInjection {
  const uuids = allocated.map((d) => d.uuid);
  const env: Record<string, string> = {
    NVIDIA_VISIBLE_DEVICES: uuids.length ? uuids.join(',') : 'void',
  };
  if (uuids.length === 0) return { env, hostConfig: {} };

  env.NVIDIA_DRIVER_CAPABILITIES = cfg.capabilities;
  // TensorFlow otherwise maps the whole card's memory at start-up.
  env.TF_FORCE_GPU_ALLOW_GROWTH = 'true';
  if (sharedMemoryMiB !== null) env.GANTRY_GPU_MEMORY_MIB = String(sharedMemoryMiB);

  switch (cfg.driver) {
    case 'nvidia':
      // Explicit UUIDs: Docker's Count=N always means GPUs 0..N-1.
      return {
        env,
        hostConfig: { DeviceRequests: [{ Driver: 'nvidia', Count: 0, DeviceIDs: uuids, Capabilities: [['gpu']] }] },
      };
    case 'cdi':
      return {
        env,
        hostConfig: { DeviceRequests: [{ Driver: 'cdi', Count: 0, DeviceIDs: uuids.map((u) => `nvidia.com/gpu=${u}`) }] },
      };
    case 'devices': {
      const nodes = [
        ...allocated.map((d) => `/dev/nvidia${d.index}`),
        ...CONTROL_DEVICES.filter((p) => deviceExists(p)),
      ];
      Object.assign(env, cfg.driverEnv);
      // Without the toolkit nothing hides the other cards from CUDA's view
      // of /proc; name ours explicitly as well.
      env.CUDA_VISIBLE_DEVICES = uuids.join(',');
      return {
        env,
        hostConfig: {
          Devices: nodes.map((p) => ({ PathOnHost: p, PathInContainer: p, CgroupPermissions: 'rwm' })),
          Mounts: cfg.driverMounts.map((m) => {
            const [source, target] = m.includes(':') ? m.split(':', 2) : [m, m];
            return { Type: 'bind', Source: source!, Target: target!, ReadOnly: true };
          }),
        },
      };
    }
    case 'env':
      return { env, hostConfig: {} };
  }
}
