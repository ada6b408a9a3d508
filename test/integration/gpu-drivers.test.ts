import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import { containersOf, docker, type InProcessGantry, startGantry, TEST_IMAGE, tempDir } from '../helpers/gantry.js';

// What Docker receives for each GANTRY_GPU_DRIVER, read back by inspecting
// the containers Gantry created (kept with GANTRY_KEEP_CONTAINERS). This host
// has neither GPUs nor the NVIDIA runtime, so the engine refuses to start
// them; that refusal is part of what is checked.
const TWO_GPUS = 'GPU-11111111-aaaa-4000-8000-000000000001:81920,GPU-22222222-bbbb-4000-8000-000000000002:81920';
const UUID1 = 'GPU-22222222-bbbb-4000-8000-000000000002';
const CONTROL = ['/dev/nvidiactl', '/dev/nvidia-uvm', '/dev/nvidia-uvm-tools'];

async function inspectJob(t: { after: (fn: () => Promise<void>) => void }, jobId: string): Promise<Docker.ContainerInspectInfo> {
  const [c] = await containersOf(jobId);
  assert.ok(c, `a container was created for ${jobId}`);
  t.after(async () => {
    await docker
      .getContainer(c.Id)
      .remove({ force: true })
      .catch(() => undefined);
  });
  return docker.getContainer(c.Id).inspect();
}

async function heldJobs(g: InProcessGantry): Promise<string[]> {
  const r = await g.call<{ items: { holders: { jobId: string }[] }[] }>('GET', '/v1/gpus');
  return r.body.items.flatMap((d) => d.holders.map((h) => h.jobId));
}

async function waitAllFree(g: InProcessGantry): Promise<void> {
  for (let i = 0; (await heldJobs(g)).length > 0; i++) {
    assert.ok(i < 200, 'GPUs released');
    await sleep(50);
  }
}

/** DeviceRequests as Docker stored them, without Options (null or {} by engine version). */
const requests = (info: Docker.ContainerInspectInfo) =>
  (info.HostConfig.DeviceRequests ?? []).map(({ Driver, Count, DeviceIDs, Capabilities }) => ({ Driver, Count, DeviceIDs, Capabilities }));

const envOf = (info: Docker.ContainerInspectInfo) =>
  Object.fromEntries(info.Config.Env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));

test('nvidia driver: DeviceRequests name the allocated UUID (no Count); without the NVIDIA runtime the job fails naming it, and its GPU is free again', async (t) => {
  const g = await startGantry(t, { GANTRY_GPUS: TWO_GPUS, GANTRY_GPU_DRIVER: 'nvidia', GANTRY_KEEP_CONTAINERS: 'true' });
  const job = await g.submit({ image: TEST_IMAGE, command: ['nvidia-smi'], gpus: { ids: ['1'] } });
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'failed');
  assert.deepEqual(done.gpus, [UUID1]);
  assert.equal(
    done.reason,
    'the container did not start: could not select device driver "nvidia" with capabilities: [[gpu]] — the Docker engine has no NVIDIA GPU runtime (install the NVIDIA Container Toolkit and register it with Docker, or choose another GANTRY_GPU_DRIVER)',
  );
  const info = await inspectJob(t, job.id);
  assert.deepEqual(requests(info), [{ Driver: 'nvidia', Count: 0, DeviceIDs: [UUID1], Capabilities: [['gpu']] }]);
  assert.deepEqual(info.HostConfig.Devices, []);
  const env = envOf(info);
  assert.equal(env.NVIDIA_VISIBLE_DEVICES, UUID1);
  assert.equal(env.NVIDIA_DRIVER_CAPABILITIES, 'compute,utility');
  assert.equal(env.TF_FORCE_GPU_ALLOW_GROWTH, 'true');
  await waitAllFree(g);

  // A CPU job under the same driver asks Docker for no GPU at all, and runs.
  const cpu = await g.waitFor((await g.submit({ image: TEST_IMAGE, command: ['sh', '-c', 'echo $NVIDIA_VISIBLE_DEVICES'] })).id);
  assert.deepEqual([cpu.state, cpu.result], ['succeeded', 'void']);
  const cpuInfo = await inspectJob(t, cpu.id);
  assert.deepEqual(cpuInfo.HostConfig.DeviceRequests ?? [], []);
  // The freed GPU can be allocated again (and fails again the same way).
  const again = await g.waitFor((await g.submit({ image: TEST_IMAGE, command: ['true'], gpus: { count: 2 } })).id);
  assert.equal(again.state, 'failed');
  assert.equal(again.gpus.length, 2);
  await inspectJob(t, again.id);
  await waitAllFree(g);
});

test('cdi driver: one DeviceRequest of driver cdi with nvidia.com/gpu=<uuid>; an engine without CDI is named in the reason', async (t) => {
  const g = await startGantry(t, { GANTRY_GPUS: TWO_GPUS, GANTRY_GPU_DRIVER: 'cdi', GANTRY_KEEP_CONTAINERS: 'true' });
  const job = await g.submit({ image: TEST_IMAGE, command: ['true'], gpus: { count: 1, memoryMiB: 1024 } });
  const done = await g.waitFor(job.id);
  const info = await inspectJob(t, job.id);
  const uuid = done.gpus[0]!;
  assert.deepEqual(requests(info), [{ Driver: 'cdi', Count: 0, DeviceIDs: [`nvidia.com/gpu=${uuid}`], Capabilities: null }]);
  assert.equal(envOf(info).GANTRY_GPU_MEMORY_MIB, '1024');
  // This engine (Docker 20.10) has no CDI support; a 25+ engine with CDI would start it.
  assert.equal(done.state, 'failed');
  assert.match(done.reason!, /could not select device driver "cdi".* — the Docker engine cannot inject CDI devices/);
  await waitAllFree(g);
});

test('devices driver: /dev/nvidiaN of the allocated GPU plus the control devices, read-only driver mounts and variables', async (t) => {
  const driverDir = tempDir('gantry-nvidia-driver-');
  fs.writeFileSync(`${driverDir}/libcuda.so.1`, '');
  const g = await startGantry(t, {
    GANTRY_GPUS: TWO_GPUS,
    GANTRY_GPU_DRIVER: 'devices',
    GANTRY_GPU_DRIVER_MOUNTS: `${driverDir}:/usr/local/nvidia`,
    GANTRY_GPU_DRIVER_ENV: 'LD_LIBRARY_PATH=/usr/local/nvidia/lib64',
    GANTRY_KEEP_CONTAINERS: 'true',
  });
  const job = await g.submit({ image: TEST_IMAGE, command: ['true'], gpus: { ids: [UUID1] } });
  const done = await g.waitFor(job.id);
  const info = await inspectJob(t, job.id);
  const present = CONTROL.filter((p) => fs.existsSync(p));
  assert.deepEqual(
    info.HostConfig.Devices,
    ['/dev/nvidia1', ...present].map((p) => ({ PathOnHost: p, PathInContainer: p, CgroupPermissions: 'rwm' })),
  );
  assert.deepEqual(info.HostConfig.DeviceRequests ?? [], []);
  assert.deepEqual(
    info.HostConfig.Mounts?.filter((m) => m.Target === '/usr/local/nvidia'),
    [{ Type: 'bind', Source: driverDir, Target: '/usr/local/nvidia', ReadOnly: true }],
  );
  const env = envOf(info);
  assert.equal(env.LD_LIBRARY_PATH, '/usr/local/nvidia/lib64');
  assert.equal(env.NVIDIA_VISIBLE_DEVICES, UUID1);
  assert.equal(env.CUDA_VISIBLE_DEVICES, UUID1);
  assert.equal(info.HostConfig.Privileged, false);
  // No /dev/nvidia1 on this CPU host: Docker refuses the device, and the reason says which node is missing.
  assert.equal(done.state, 'failed');
  assert.match(
    done.reason!,
    /^the container did not start: .*"\/dev\/nvidia1": no such file or directory — the GPU device node \/dev\/nvidia1 does not exist on the Docker host/,
  );
  await waitAllFree(g);
});
