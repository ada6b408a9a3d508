/**
 * A fleet of three nodes on one machine: one PostgreSQL, three Gantry
 * processes, each with its own Docker engine. What the fleet promises is
 * tested by doing it: submit here, run there, follow and cancel from a
 * third node; kill -9 a node and bring it back within its lease; kill a
 * node and its engine for good; SIGSTOP a node past its lease and let it
 * wake; restart PostgreSQL under running jobs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from '../../src/model/job.js';
import type { Node } from '../../src/model/node.js';
import { eventually, type Fleet, startFleet } from '../helpers/fleet.js';
import { ADMIN_TOKEN, TEST_IMAGE } from '../helpers/gantry.js';
import { readSse } from '../helpers/sse.js';

/** Long enough for a killed node's Gantry to start again within it (tsx compiles on start). */
const LEASE = 10;

async function nodesOf(fleet: Fleet, via = 'a'): Promise<Node[]> {
  const r = await fleet.node(via).gantry.call<{ items: Node[] }>('GET', '/v1/nodes');
  assert.equal(r.status, 200, r.text);
  return r.body.items;
}

async function containersOn(fleet: Fleet, name: string, jobId: string) {
  return fleet.node(name).dockerd.docker.listContainers({ all: true, filters: { label: [`dev.gantry.job-id=${jobId}`] } });
}

test('three nodes, one API', { timeout: 240_000 }, async (t) => {
  const fleet = await startFleet(t, {
    leaseSeconds: LEASE,
    nodes: [
      { name: 'a', labels: { zone: 'east' }, gpusMiB: [81559, 81559] },
      { name: 'b', labels: { zone: 'east' }, gpusMiB: [81559, 81559] },
      { name: 'c', labels: { zone: 'west' }, gpusMiB: [81559, 81559] },
    ],
  });
  const [a, b, c] = fleet.nodes.map((n) => n.gantry);

  await t.test('every node lists the three nodes, up', async () => {
    for (const via of ['a', 'b', 'c']) {
      const nodes = await nodesOf(fleet, via);
      assert.deepEqual(nodes.map((n) => [n.name, n.state, n.gpus.length]).sort(), [
        ['a', 'up', 2],
        ['b', 'up', 2],
        ['c', 'up', 2],
      ]);
      for (const n of nodes) assert.ok(n.heartbeatAgeSeconds < LEASE, `${n.name} heartbeat ${n.heartbeatAgeSeconds}s old`);
    }
  });

  await t.test('submit to a, run on c, follow through b with Last-Event-ID, cancel through a', async () => {
    const job = await a!.submit({
      image: TEST_IMAGE,
      command: ['sh', '-c', 'for i in $(seq 1 40); do echo line-$i; sleep 0.05; done'],
      placement: { node: 'c' },
    });
    const seen = await readSse(`${b!.url}/v1/jobs/${job.id}/logs`, ADMIN_TOKEN, { stop: (e) => e.event === 'log' && e.id === '10' });
    const lines = seen.events.filter((e) => e.event === 'log');
    assert.equal(lines.at(-1)!.id, '10');
    const rest = await readSse(`${b!.url}/v1/jobs/${job.id}/logs`, ADMIN_TOKEN, { headers: { 'last-event-id': '10' } });
    const more = rest.events.filter((e) => e.event === 'log').map((e) => JSON.parse(e.data).line as string);
    assert.deepEqual(
      more,
      Array.from({ length: 30 }, (_, i) => `line-${i + 11}`),
    );
    const end = rest.events.at(-1)!;
    assert.equal(end.event, 'end');
    const final = JSON.parse(end.data) as Job;
    assert.equal(final.state, 'succeeded');
    assert.equal(final.node, 'c');
    assert.equal((await c!.job(job.id)).node, 'c');

    const long = await a!.submit({ image: TEST_IMAGE, command: ['sleep', '300'], placement: { node: 'c' } });
    await a!.waitFor(long.id, (j) => j.state === 'running');
    assert.equal((await containersOn(fleet, 'c', long.id)).length, 1);
    assert.equal((await containersOn(fleet, 'a', long.id)).length, 0);
    const cancel = await a!.call<Job>('POST', `/v1/jobs/${long.id}/cancel`);
    assert.ok(cancel.status === 200 || cancel.status === 202, cancel.text);
    const cancelled = await b!.waitFor(long.id, undefined, 30_000);
    assert.equal(cancelled.state, 'cancelled');
    await eventually('the container removed on c', async () => ((await containersOn(fleet, 'c', long.id)).length === 0 ? true : undefined));
  });

  await t.test('Idempotency-Key is fleet-wide', async () => {
    const spec = { image: TEST_IMAGE, command: ['true'] };
    const first = await a!.submit(spec, { 'idempotency-key': 'fleet-key-1' });
    const again = await c!.call<Job>('POST', '/v1/jobs', { body: spec, headers: { 'idempotency-key': 'fleet-key-1' } });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.body.id, first.id);
  });

  await t.test('placement: impossible constraints are a 422 naming the field; labels steer', async () => {
    const unknown = await b!.call<{ errors: { field: string }[] }>('POST', '/v1/jobs', {
      body: { image: TEST_IMAGE, command: ['true'], placement: { node: 'zz' } },
    });
    assert.equal(unknown.status, 422, unknown.text);
    assert.equal(unknown.body.errors[0]!.field, 'body.placement.node');
    const noLabel = await b!.call<{ errors: { field: string }[] }>('POST', '/v1/jobs', {
      body: { image: TEST_IMAGE, command: ['true'], placement: { nodeLabels: { zone: 'north' } } },
    });
    assert.equal(noLabel.status, 422, noLabel.text);
    assert.equal(noLabel.body.errors[0]!.field, 'body.placement.nodeLabels');
    const tooBig = await b!.call<{ errors: { field: string }[] }>('POST', '/v1/jobs', {
      body: { image: TEST_IMAGE, command: ['true'], gpus: { count: 3 } },
    });
    assert.equal(tooBig.status, 422, tooBig.text);
    assert.equal(tooBig.body.errors[0]!.field, 'body.gpus');
    const west = await b!.submit({ image: TEST_IMAGE, command: ['true'], placement: { nodeLabels: { zone: 'west' } } });
    assert.equal((await b!.waitFor(west.id)).node, 'c');
  });

  await t.test('six 1-GPU jobs fill the six GPUs of the fleet at once, none shared', async () => {
    const jobs = await Promise.all(
      Array.from({ length: 6 }, (_, i) => [a, b, c][i % 3]!.submit({ image: TEST_IMAGE, command: ['sleep', '4'], gpus: { count: 1 } })),
    );
    const running = await eventually('six running', async () => {
      const now = await Promise.all(jobs.map((j) => a!.job(j.id)));
      return now.every((j) => j.state === 'running') ? now : undefined;
    });
    const perNode = new Map<string, number>();
    for (const j of running) perNode.set(j.node!, (perNode.get(j.node!) ?? 0) + 1);
    assert.deepEqual([...perNode.entries()].sort(), [
      ['a', 2],
      ['b', 2],
      ['c', 2],
    ]);
    assert.equal(new Set(running.flatMap((j) => j.gpus)).size, 6);
    const seventh = await a!.submit({ image: TEST_IMAGE, command: ['true'], gpus: { count: 1 } });
    assert.equal((await a!.job(seventh.id)).state, 'queued');
    for (const j of jobs) assert.equal((await a!.waitFor(j.id)).state, 'succeeded');
    assert.equal((await a!.waitFor(seventh.id)).state, 'succeeded');
  });

  await t.test("fair share counts a GPU job's time on every node, from its start, wherever it runs", async () => {
    const useOn = async (via: typeof a) => {
      const r = await via!.call<{ fairShare: { units: { unit: string; gpuSeconds: number }[] } }>('GET', '/v1/teams');
      assert.equal(r.status, 200, r.text);
      return r.body.fairShare.units.find((u) => u.unit === 'owner:admin')?.gpuSeconds ?? 0;
    };
    const job = await b!.submit({ image: TEST_IMAGE, command: ['sleep', '5'], gpus: { count: 2 }, placement: { node: 'a' } });
    await b!.waitFor(job.id, (j) => j.state === 'running');
    // Every earlier job has ended: from here on, only this one adds to the owner's use (2 GPUs, about 2 GPU-seconds a second).
    await sleep(500);
    const before = await Promise.all([useOn(b), useOn(c)]);
    await sleep(2000);
    const after = await Promise.all([useOn(b), useOn(c)]);
    for (const [i, via] of ['b', 'c'].entries()) {
      assert.ok(after[i]! - before[i]! > 3, `node ${via} counts the job running on a: ${before[i]} → ${after[i]}`);
    }
    assert.equal((await b!.waitFor(job.id)).state, 'succeeded');
  });

  await t.test('a drained node finishes its jobs and starts nothing new', async () => {
    const running = await a!.submit({ image: TEST_IMAGE, command: ['sleep', '2'], placement: { node: 'b' } });
    await a!.waitFor(running.id, (j) => j.state === 'running');
    assert.equal((await a!.call('POST', '/v1/nodes/b/drain')).status, 200);
    const waits = await a!.submit({ image: TEST_IMAGE, command: ['true'], placement: { node: 'b' } });
    assert.equal((await a!.waitFor(running.id)).state, 'succeeded');
    // An undrained node would have started it within a scheduling pass.
    await sleep(2000);
    const still = await c!.job(waits.id);
    assert.equal(still.state, 'queued');
    assert.equal((await nodesOf(fleet)).find((n) => n.name === 'b')!.drained, true);
    assert.equal((await c!.call('POST', '/v1/nodes/b/undrain')).status, 200);
    assert.equal((await a!.waitFor(waits.id)).node, 'b');
  });

  await t.test('kill -9 of a node that returns within its lease: nothing lost, never declared lost', async () => {
    const job = await a!.submit({
      image: TEST_IMAGE,
      command: ['sh', '-c', 'for i in $(seq 1 30); do echo tick-$i; sleep 0.1; done'],
      placement: { node: 'c' },
    });
    await a!.waitFor(job.id, (j) => j.state === 'running');
    const node = fleet.node('c');
    const killedAt = Date.now();
    await node.gantry.stop('SIGKILL');
    await sleep(500);
    await node.restart();
    const backMs = Date.now() - killedAt;
    assert.ok(backMs < ((LEASE * 2) / 3) * 1000, `c took ${backMs} ms to come back: longer than its lease could last`);
    const done = await a!.waitFor(job.id, undefined, 30_000);
    assert.equal(done.state, 'succeeded', done.reason ?? '');
    assert.equal(done.attempt, 1);
    const lines = (await a!.call<string>('GET', `/v1/jobs/${job.id}/logs`)).text.trim().split('\n');
    assert.deepEqual(
      lines,
      Array.from({ length: 30 }, (_, i) => `tick-${i + 1}`),
    );
    assert.equal((await nodesOf(fleet)).find((n) => n.name === 'c')!.state, 'up');
  });
});
