// The private-engine helper (test/helpers/dockerd.ts) against real dockerds
// started beside the main engine: what the tests of a vanishing engine, and
// the fleet tests with one engine per Gantry node, rely on.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import type Docker from 'dockerode';
import { mainDocker, mountsUnder, startDockerd, TEST_IMAGE } from '../helpers/dockerd.js';

const needsRoot = { skip: process.getuid?.() !== 0 && 'needs root to start a dockerd' };

async function sleeper(d: Docker): Promise<{ container: Docker.Container; pid: number }> {
  // A StopTimeout of 1 s keeps a daemon shutdown short: PID 1 of the container
  // ignores SIGTERM, so the daemon waits out the timeout and then SIGKILLs it.
  const container = await d.createContainer({
    Image: TEST_IMAGE,
    Cmd: ['sleep', '30'],
    StopTimeout: 1,
    HostConfig: { NetworkMode: 'none' },
  });
  await container.start();
  const pid = (await container.inspect()).State.Pid;
  assert.ok(pid > 0, 'the container has a process');
  return { container, pid };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Processes whose command line names path: a dockerd, its containerd, the containers' shims. */
function processesNaming(path: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(path)) pids.push(Number(entry));
    } catch {
      // the process ended while being read
    }
  }
  return pids;
}

test(
  'a private dockerd answers on its own socket and data root, holds the test image, and runs containers the main engine does not see',
  needsRoot,
  async (t) => {
    const d = await startDockerd(t);
    assert.notEqual(d.socket, '/var/run/docker.sock');
    const info = await d.docker.info();
    assert.equal(info.DockerRootDir, d.dataRoot);
    assert.equal(info.LiveRestoreEnabled, false);
    await d.docker.getImage(TEST_IMAGE).inspect();

    const container = await d.docker.createContainer({
      Image: TEST_IMAGE,
      Cmd: ['sh', '-c', 'exit 3'],
      HostConfig: { NetworkMode: 'none' },
    });
    await container.start();
    assert.equal((await container.wait()).StatusCode, 3);
    await assert.rejects(mainDocker.getContainer(container.id).inspect(), (err: { statusCode?: number }) => err.statusCode === 404);
    assert.ok(d.pid !== null && processesNaming(d.dataRoot).includes(d.pid), 'this dockerd serves that data root');
  },
);

test(
  'with liveRestore, a running container outlives the daemon: it runs on while the engine is down and is the same process after restart()',
  needsRoot,
  async (t) => {
    const d = await startDockerd(t, { liveRestore: true });
    assert.equal((await d.docker.info()).LiveRestoreEnabled, true);
    const { container, pid } = await sleeper(d.docker);

    assert.deepEqual(await d.stop(), { code: 0, signal: null });
    assert.equal(d.pid, null);
    await assert.rejects(d.docker.ping());
    assert.ok(alive(pid), 'the container process runs on with the engine down');

    await d.restart();
    const after = (await container.inspect()).State;
    assert.equal(after.Running, true);
    assert.equal(after.Pid, pid);

    // The restarted engine has the container back under its control.
    await container.kill();
    assert.equal((await container.wait()).StatusCode, 137);
  },
);

test('without liveRestore, the daemon shutdown kills a running container, which then shows a non-zero exit code', needsRoot, async (t) => {
  const d = await startDockerd(t);
  const { container, pid } = await sleeper(d.docker);

  assert.deepEqual(await d.stop(), { code: 0, signal: null });
  assert.equal(alive(pid), false, 'the shutdown killed the container process');

  await d.restart();
  const state = (await container.inspect()).State;
  assert.equal(state.Running, false);
  assert.equal(state.ExitCode, 137, 'SIGKILLed once its stop timeout ran out');
});

test(
  'kill() takes the engine away at once and leaves its containers running; once restarted on the same data, it kills them',
  needsRoot,
  async (t) => {
    const d = await startDockerd(t);
    const { container, pid } = await sleeper(d.docker);

    assert.deepEqual(await d.kill(), { code: null, signal: 'SIGKILL' });
    await assert.rejects(d.docker.ping());
    assert.ok(alive(pid), 'no shutdown stopped the container');

    await d.restart();
    await d.docker.getImage(TEST_IMAGE).inspect();
    const state = (await container.inspect()).State;
    assert.equal(state.Running, false);
    assert.equal(state.ExitCode, 137, 'without live-restore, what the engine finds running when it comes back is killed');
    assert.equal(alive(pid), false);
  },
);

test(
  'destroy() leaves nothing behind, even a container that a live-restore engine left running with the engine down',
  needsRoot,
  async (t) => {
    const d = await startDockerd(t, { liveRestore: true });
    const { pid } = await sleeper(d.docker);
    await d.stop();
    assert.ok(alive(pid));
    assert.ok(mountsUnder(d.dir).length > 0, 'the running container keeps its mounts under the directory');

    await d.destroy();
    assert.equal(alive(pid), false, 'the container process is gone');
    assert.deepEqual(processesNaming(d.dir), [], 'no dockerd, containerd or shim of this engine is left');
    assert.deepEqual(mountsUnder(d.dir), []);
    assert.equal(fs.existsSync(d.dir), false);
    await d.destroy();
  },
);
