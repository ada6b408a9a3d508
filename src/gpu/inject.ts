import fs from 'node:fs';
import type { Config } from '../config.js';
import type { GpuDevice } from './inventory.js';

/** What a container gets for its GPUs, in the terms of the container runtime's ContainerSpec. */
export interface GpuInjection {
  env: Record<string, string>;
  /** Host device nodes passed through. */
  devices: string[];
  deviceRequests: { driver: 'nvidia' | 'cdi'; ids: string[]; capabilities?: string[][] }[];
  /** Read-only driver mounts (the `devices` driver). */
  mounts: { type: 'bind'; source: string; target: string; readOnly: true }[];
}

const NOTHING = { devices: [], deviceRequests: [], mounts: [] };

const CONTROL_DEVICES = ['/dev/nvidiactl', '/dev/nvidia-uvm', '/dev/nvidia-uvm-tools'];

/**
 * What a job's container gets for its GPUs, by GANTRY_GPU_DRIVER. Always
 * sets NVIDIA_VISIBLE_DEVICES (the allocated UUIDs, or `void` so that a
 * host whose default runtime is nvidia exposes nothing to a CPU job) and
 * NVIDIA_DRIVER_CAPABILITIES (GANTRY_GPU_CAPABILITIES); GPU jobs also get
 * TF_FORCE_GPU_ALLOW_GROWTH=true, and sharing jobs GANTRY_GPU_MEMORY_MIB.
 *
 * - nvidia: a DeviceRequest for driver nvidia with explicit UUIDs (never
 *   Count: Docker's Count=N always means GPUs 0..N-1).
 * - cdi: a DeviceRequest for driver cdi naming nvidia.com/gpu=<uuid>.
 * - devices: /dev/nvidiaN of the allocated GPUs plus the control devices
 *   that exist on the host, the operator's read-only driver mounts and
 *   variables (GANTRY_GPU_DRIVER_MOUNTS / _ENV); needs no toolkit.
 * - env: the variables only.
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
    NVIDIA_DRIVER_CAPABILITIES: cfg.capabilities,
  };
  if (uuids.length === 0) return { env, ...NOTHING };

  // TensorFlow otherwise maps the whole card's memory at start-up.
  env.TF_FORCE_GPU_ALLOW_GROWTH = 'true';
  if (sharedMemoryMiB !== null) env.GANTRY_GPU_MEMORY_MIB = String(sharedMemoryMiB);

  switch (cfg.driver) {
    case 'nvidia':
      // Explicit UUIDs: Docker's Count=N always means GPUs 0..N-1.
      return { env, ...NOTHING, deviceRequests: [{ driver: 'nvidia', ids: uuids, capabilities: [['gpu']] }] };
    case 'cdi':
      return { env, ...NOTHING, deviceRequests: [{ driver: 'cdi', ids: uuids.map((u) => `nvidia.com/gpu=${u}`) }] };
    case 'devices': {
      const nodes = [...allocated.map((d) => `/dev/nvidia${d.minor ?? d.index}`), ...CONTROL_DEVICES.filter((p) => deviceExists(p))];
      Object.assign(env, cfg.driverEnv);
      // Without the toolkit nothing hides the other cards from CUDA's view
      // of /proc; name ours explicitly as well.
      env.CUDA_VISIBLE_DEVICES = uuids.join(',');
      return {
        env,
        devices: nodes,
        deviceRequests: [],
        mounts: cfg.driverMounts.map((m) => {
          const [source, target] = m.includes(':') ? m.split(':', 2) : [m, m];
          return { type: 'bind' as const, source: source!, target: target!, readOnly: true as const };
        }),
      };
    }
    case 'env':
      return { env, ...NOTHING };
  }
}

/**
 * Adds what an operator needs to know to a Docker error about GPUs: which
 * GPU runtime the engine lacks for the configured driver. Other messages
 * come back unchanged.
 */
export function explainGpuError(driver: Config['gpus']['driver'], message: string): string {
  const selectDriver = /could not select device driver "([^"]*)"/.exec(message);
  if (selectDriver?.[1] === 'nvidia') {
    return `${message} — the Docker engine has no NVIDIA GPU runtime (install the NVIDIA Container Toolkit and register it with Docker, or choose another GANTRY_GPU_DRIVER)`;
  }
  if (selectDriver?.[1] === 'cdi' || /CDI/.test(message)) {
    return `${message} — the Docker engine cannot inject CDI devices (needs Docker 25+ with CDI enabled and a spec from \`nvidia-ctk cdi generate\`, or choose another GANTRY_GPU_DRIVER)`;
  }
  const node = /(\/dev\/nvidia[\w-]*)\S*: no such file or directory/i.exec(message);
  if (driver === 'devices' && node) {
    return `${message} — the GPU device node ${node[1]} does not exist on the Docker host (is the NVIDIA driver loaded?)`;
  }
  return message;
}
