import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { containersGone, containersOf, spawnGantry, TEST_IMAGE, tempDir } from '../helpers/gantry.js';

const LINES = 40;
const numbers = (n: number) => Array.from({ length: n }, (_, i) => `line ${i + 1}`);

/** The hostname a process sees (its UTS namespace's). */
const hostnameOf = (pid: number) => execFileSync('nsenter', ['--target', String(pid), '--uts', 'hostname'], { encoding: 'utf8' }).trim();

const needsRoot = { skip: process.getuid?.() !== 0 && 'needs root for a UTS namespace (unshare --uts)' };

test(
  'Gantry stopped mid-job and started again under another hostname on the same data dir: the job ends succeeded at attempt 1 with every line exactly once',
  needsRoot,
  async (t) => {
    const dir = tempDir();
    let g = await spawnGantry(dir, {}, undefined, { hostname: 'host-a' });
    t.after(() => g.stop('SIGKILL'));
    assert.equal(hostnameOf(g.proc.pid!), 'host-a');
    const job = await g.submit({
      image: TEST_IMAGE,
      command: ['sh', '-c', `for i in $(seq 1 ${LINES}); do echo line $i; sleep 0.2; done`],
    });
    const running = await g.waitFor(job.id, (j) => j.state === 'running');
    assert.equal(running.node, 'host-a');
    // Stop once some lines, not all, are in.
    for (;;) {
      const seen = (await g.call('GET', `/v1/jobs/${job.id}/logs`)).text.split('\n').filter(Boolean).length;
      if (seen >= 5) break;
      await sleep(100);
    }
    assert.equal(await g.stop('SIGTERM'), 0);
    const [c] = await containersOf(job.id);
    assert.equal(c?.State, 'running', 'the job was still running when Gantry stopped');

    g = await spawnGantry(dir, {}, undefined, { hostname: 'host-b' });
    assert.equal(hostnameOf(g.proc.pid!), 'host-b', 'the second Gantry runs under another hostname');
    const done = await g.waitFor(job.id, undefined, 60_000);
    assert.equal(done.state, 'succeeded', `ended ${done.state}: ${done.reason}`);
    assert.equal(done.attempt, 1);
    assert.equal(done.node, 'host-a', 'the node kept the name of its first start');
    const out = (await g.call('GET', `/v1/jobs/${job.id}/logs`)).text.split('\n').filter(Boolean);
    assert.deepEqual(out, numbers(LINES), 'every line, exactly once, in order');
    const nodes = (await g.call<{ items: { name: string }[] }>('GET', '/v1/nodes')).body.items.map((n) => n.name);
    assert.deepEqual(nodes, ['host-a'], 'no second node was registered');
    const file = path.join(dir, 'node-id');
    assert.equal(fs.readFileSync(file, 'utf8'), 'host-a\n');
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(await containersGone(job.id), []);
  },
);
