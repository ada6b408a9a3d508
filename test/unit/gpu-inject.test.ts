import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { explainGpuError, type GpuInjection, gpuInjection } from '../../src/gpu/inject.js';
import type { GpuDevice } from '../../src/gpu/inventory.js';
import { createOptions } from '../../src/runtime/docker/create-options.js';

const gpus = (env: Record<string, string> = {}) => loadConfig({ GANTRY_ADMIN_TOKEN: 'x'.repeat(16), ...env }).gpus;
const A: GpuDevice = { index: 0, uuid: 'GPU-aaaa', name: 'H200', memoryMiB: 143771 };
const B: GpuDevice = { index: 1, uuid: 'GPU-bbbb', name: 'H200', memoryMiB: 143771, minor: 5 };
/** The injection as the Docker runtime sends it: the HostConfig fields it fills. */
function hostConfig(inj: GpuInjection) {
  const hc = createOptions({
    name: 'n',
    image: 'i',
    command: ['true'],
    env: inj.env,
    user: '65532:65532',
    readonlyRootfs: false,
    labels: {},
    network: 'none',
    memoryBytes: 1,
    nanoCpus: 0,
    shmBytes: 1,
    pidsLimit: 1,
    capabilities: [],
    mounts: inj.mounts,
    devices: inj.devices,
    deviceRequests: inj.deviceRequests,
    log: { driver: 'local', maxSizeMiB: 1 },
  }).HostConfig!;
  return { Devices: hc.Devices, DeviceRequests: hc.DeviceRequests, Mounts: hc.Mounts };
}
const NONE = { Devices: [], DeviceRequests: [], Mounts: [] };
const BASE = { NVIDIA_DRIVER_CAPABILITIES: 'compute,utility', TF_FORCE_GPU_ALLOW_GROWTH: 'true' };

test('a CPU job gets NVIDIA_VISIBLE_DEVICES=void and no devices, whatever the driver', () => {
  for (const driver of ['nvidia', 'cdi', 'devices', 'env']) {
    const inj = gpuInjection(gpus({ GANTRY_GPU_DRIVER: driver }), [], null, () => true);
    assert.deepEqual(inj.env, { NVIDIA_VISIBLE_DEVICES: 'void', NVIDIA_DRIVER_CAPABILITIES: 'compute,utility' });
    assert.deepEqual(hostConfig(inj), NONE);
  }
});

test('nvidia: one DeviceRequest with explicit UUIDs, never a Count', () => {
  const inj = gpuInjection(gpus({ GANTRY_GPU_DRIVER: 'nvidia' }), [B, A], null);
  assert.deepEqual(hostConfig(inj), {
    ...NONE,
    DeviceRequests: [{ Driver: 'nvidia', Count: 0, DeviceIDs: ['GPU-bbbb', 'GPU-aaaa'], Capabilities: [['gpu']] }],
  });
  assert.deepEqual(inj.env, { NVIDIA_VISIBLE_DEVICES: 'GPU-bbbb,GPU-aaaa', ...BASE });
});

test('cdi: driver cdi with nvidia.com/gpu=<uuid>', () => {
  const inj = gpuInjection(gpus({ GANTRY_GPU_DRIVER: 'cdi' }), [A], null);
  assert.deepEqual(hostConfig(inj), { ...NONE, DeviceRequests: [{ Driver: 'cdi', Count: 0, DeviceIDs: ['nvidia.com/gpu=GPU-aaaa'] }] });
  assert.equal(inj.env.NVIDIA_VISIBLE_DEVICES, 'GPU-aaaa');
});

test('devices: /dev/nvidia<minor> of the allocated GPUs, the control devices, read-only driver mounts and variables', () => {
  const cfg = gpus({
    GANTRY_GPU_DRIVER: 'devices',
    GANTRY_GPU_DRIVER_MOUNTS: '/usr/local/nvidia,/opt/drv/lib:/usr/lib/nvidia',
    GANTRY_GPU_DRIVER_ENV: 'LD_LIBRARY_PATH=/usr/local/nvidia/lib64,PATH=/usr/local/nvidia/bin:/usr/bin:/bin',
  });
  const inj = gpuInjection(cfg, [A, B], 20480, () => true);
  const dev = (p: string) => ({ PathOnHost: p, PathInContainer: p, CgroupPermissions: 'rwm' });
  assert.deepEqual(hostConfig(inj).Devices, [
    dev('/dev/nvidia0'),
    dev('/dev/nvidia5'),
    dev('/dev/nvidiactl'),
    dev('/dev/nvidia-uvm'),
    dev('/dev/nvidia-uvm-tools'),
  ]);
  assert.deepEqual(hostConfig(inj).Mounts, [
    { Type: 'bind', Source: '/usr/local/nvidia', Target: '/usr/local/nvidia', ReadOnly: true },
    { Type: 'bind', Source: '/opt/drv/lib', Target: '/usr/lib/nvidia', ReadOnly: true },
  ]);
  assert.deepEqual(hostConfig(inj).DeviceRequests, []);
  assert.deepEqual(inj.env, {
    NVIDIA_VISIBLE_DEVICES: 'GPU-aaaa,GPU-bbbb',
    ...BASE,
    GANTRY_GPU_MEMORY_MIB: '20480',
    LD_LIBRARY_PATH: '/usr/local/nvidia/lib64',
    PATH: '/usr/local/nvidia/bin:/usr/bin:/bin',
    CUDA_VISIBLE_DEVICES: 'GPU-aaaa,GPU-bbbb',
  });
  const missing = gpuInjection(cfg, [A], null, (p) => p === '/dev/nvidiactl');
  assert.deepEqual(
    missing.devices,
    ['/dev/nvidia0', '/dev/nvidiactl'],
    'control devices the host lacks are left out rather than failing the start',
  );
});

test('env: only the variables; the operator may narrow the capabilities', () => {
  const inj = gpuInjection(gpus({ GANTRY_GPU_DRIVER: 'env', GANTRY_GPU_CAPABILITIES: 'compute' }), [A], 40960);
  assert.deepEqual(inj.env, {
    NVIDIA_VISIBLE_DEVICES: 'GPU-aaaa',
    NVIDIA_DRIVER_CAPABILITIES: 'compute',
    TF_FORCE_GPU_ALLOW_GROWTH: 'true',
    GANTRY_GPU_MEMORY_MIB: '40960',
  });
  assert.deepEqual(hostConfig(inj), NONE);
});

test('Docker errors about a missing GPU runtime are explained; others pass unchanged', () => {
  const nv = 'could not select device driver "nvidia" with capabilities: [[gpu]]';
  assert.match(
    explainGpuError('nvidia', nv),
    /^could not select device driver "nvidia" with capabilities: \[\[gpu\]\] — the Docker engine has no NVIDIA GPU runtime/,
  );
  assert.match(explainGpuError('cdi', 'could not select device driver "cdi" with capabilities: []'), /cannot inject CDI devices/);
  assert.match(
    explainGpuError('cdi', 'CDI device injection failed: unresolvable CDI devices nvidia.com/gpu=GPU-a'),
    /nvidia-ctk cdi generate/,
  );
  const dev = 'error gathering device information while adding custom device "/dev/nvidia0": no such file or directory';
  assert.match(explainGpuError('devices', dev), /the GPU device node \/dev\/nvidia0 does not exist on the Docker host/);
  assert.equal(explainGpuError('env', 'No such image: x'), 'No such image: x');
});
