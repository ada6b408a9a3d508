/**
 * The fleet's failure model, each case done for real on a fleet of three
 * nodes (one PostgreSQL, three Gantry processes, three Docker engines; c
 * reaches the database through a Toxiproxy link of its own): c's
 * connections dropped mid-refresh, c's link frozen past its lease, a node
 * gone for good, a node paused past its lease that wakes up, and
 * PostgreSQL restarted under running jobs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Node } from '../../src/model/node.js';
import { eventually, type Fleet, startFleet } from '../helpers/fleet.js';
import { TEST_IMAGE } from '../helpers/gantry.js';

const LEASE = 3;

async function node(fleet: Fleet, name: string, via: string): Promise<Node> {
  const r = await fleet.node(via).gantry.call<Node>('GET', `/v1/nodes/${name}`);
  assert.equal(r.status, 200, r.text);
  return r.body;
}

async function containersOn(fleet: Fleet, name: string, jobId: string) {
  return fleet.node(name).dockerd.docker.listContainers({ all: true, filters: { label: [`dev.gantry.job-id=${jobId}`] } });
}

/** Runs `body` with every node but `only` drained, so what it submits lands on `only`. */
async function landOn<T>(fleet: Fleet, only: string, body: () => Promise<T>): Promise<T> {
  const admin = fleet.nodes.find((n) => n.name !== only)!.gantry;
  const others = fleet.nodes.filter((n) => n.name !== only);
  for (const n of others) assert.equal((await admin.call('POST', `/v1/nodes/${n.name}/drain`)).status, 200);
  try {
    return await body();
  } finally {
    for (const n of others) assert.equal((await admin.call('POST', `/v1/nodes/${n.name}/undrain`)).status, 200);
  }
}

test('fleet failures', { timeout: 300_000 }, async (t) => {
  const fleet = await startFleet(t, {
    leaseSeconds: LEASE,
    nodes: [{ name: 'a' }, { name: 'b' }, { name: 'c', proxied: true }],
    // The nodes' warnings say what each did about its seat.
    env: { GANTRY_LOG_LEVEL: 'warn' },
  });
  const a = fleet.node('a').gantry;

  /** c's process is still the one the fleet started (no exit, fatal or not), and it runs a job pinned to it. */
  async function cCarriesOn(what: string): Promise<void> {
    const c = fleet.node('c').gantry;
    assert.equal(c.proc.exitCode, null, `c exited after ${what}:\n${c.output().slice(-3000)}`);
    assert.equal(c.proc.signalCode, null);
    assert.doesNotMatch(c.output(), /fatal error/);
    await eventually('c up', async () => ((await node(fleet, 'c', 'a')).state === 'up' ? true : undefined));
    const job = await a.submit({ image: TEST_IMAGE, command: ['echo', 'still-here'], placement: { node: 'c' } });
    assert.equal((await a.waitFor(job.id, undefined, 30_000)).state, 'succeeded');
    assert.equal(c.proc.exitCode, null);
  }

  await t.test("c's database connections dropped while it refreshes its membership: it never exits, and carries on", async () => {
    const link = fleet.node('c').link!;
    // Every answer to c comes late, so that its refreshes are in flight when the link is cut.
    await link.delay(200);
    // Each drain or undrain of b tells every node to read its own record again (NodeMembership.refresh).
    let toggling = true;
    const toggler = (async () => {
      for (let drained = false; toggling; ) {
        drained = !drained;
        await a.call('POST', `/v1/nodes/b/${drained ? 'drain' : 'undrain'}`);
        await sleep(50);
      }
      await a.call('POST', '/v1/nodes/b/undrain');
    })();
    try {
      await sleep(1000);
      await link.cut();
      await sleep(2000);
      await link.heal();
      await sleep(1000);
    } finally {
      toggling = false;
      await toggler;
    }
    assert.match(fleet.node('c').gantry.output(), /could not read this node's record/, 'a refresh did fail mid-way');
    await cCarriesOn('its connections were dropped');
  });

  await t.test("c's link frozen past its lease: c starts no new job, the others declare it lost, and it rejoins once healed", async () => {
    const link = fleet.node('c').link!;
    await link.freeze();
    try {
      await eventually('a declares c lost', async () => ((await node(fleet, 'c', 'a')).state === 'lost' ? true : undefined), LEASE * 4000);
      assert.match(fleet.node('c').gantry.output(), /this node starts no new job until it is/);
    } finally {
      await link.heal();
    }
    await cCarriesOn('its link froze');
  });

  await t.test('PostgreSQL restarted mid-run: jobs keep running, no line or state change lost, nodes reconnect', async () => {
    const job = await a.submit({
      image: TEST_IMAGE,
      command: ['sh', '-c', 'for i in $(seq 1 60); do echo pg-$i; sleep 0.1; done'],
      placement: { node: 'b' },
    });
    // A job that ends while PostgreSQL is down: its end and its last lines are stored once it is back.
    const during = await a.submit({
      image: TEST_IMAGE,
      command: ['sh', '-c', 'sleep 1.5; echo ended-during-outage; exit 3'],
      placement: { node: 'c' },
    });
    await a.waitFor(job.id, (j) => j.state === 'running');
    await a.waitFor(during.id, (j) => j.state === 'running');
    await sleep(500);
    await fleet.pg.stop();
    await sleep(3000);
    await fleet.pg.start();
    const done = await a.waitFor(job.id, undefined, 60_000);
    assert.equal(done.state, 'succeeded', done.reason ?? '');
    const ended = await a.waitFor(during.id, undefined, 30_000);
    assert.equal(ended.state, 'failed');
    assert.equal(ended.exitCode, 3);
    assert.equal(ended.result, 'ended-during-outage');
    const text = (await a.call<string>('GET', `/v1/jobs/${job.id}/logs`)).text;
    assert.deepEqual(
      text.trim().split('\n'),
      Array.from({ length: 60 }, (_, i) => `pg-${i + 1}`),
    );
    // A job submitted after the restart runs: every node serves and schedules again.
    for (const n of fleet.nodes) {
      const after = await n.gantry.submit({ image: TEST_IMAGE, command: ['echo', 'after'], placement: { node: n.name } });
      assert.equal((await n.gantry.waitFor(after.id)).state, 'succeeded');
    }
    for (const n of ['a', 'b', 'c']) assert.equal((await node(fleet, n, 'a')).state, 'up');
  });

  await t.test('a node paused past its lease is fenced: the fleet re-runs its job elsewhere and the node kills its copy', async () => {
    const job = await landOn(fleet, 'c', async () => {
      const j = await a.submit({
        image: TEST_IMAGE,
        command: ['sh', '-c', 'echo attempt-$GANTRY_ATTEMPT; sleep 8'],
        retry: { maxAttempts: 2, on: ['node_lost'] },
      });
      await a.waitFor(j.id, (x) => x.state === 'running');
      return j;
    });
    assert.equal((await a.job(job.id)).node, 'c');
    // The first attempt's line is stored before c pauses (once paused, c could store it only after it was fenced).
    await eventually("c stores the first attempt's line", async () =>
      /attempt-1/.test((await a.call<string>('GET', `/v1/jobs/${job.id}/logs`)).text) ? true : undefined,
    );
    const c = fleet.node('c');
    c.gantry.proc.kill('SIGSTOP');
    try {
      const moved = await a
        .waitFor(job.id, (j) => j.attempt === 2 && j.state === 'running', 30_000)
        .catch(async (err: Error) => {
          const nodes = (await a.call('GET', '/v1/nodes')).text;
          throw new Error(`${err.message}; the nodes as a sees them: ${nodes}`);
        });
      assert.notEqual(moved.node, 'c');
      assert.equal((await node(fleet, 'c', 'a')).state, 'lost');
      // The first attempt's container still runs on c while c is paused: the
      // documented window in which two attempts can overlap.
      assert.equal((await containersOn(fleet, 'c', job.id)).filter((x) => x.State === 'running').length, 1);
    } finally {
      c.gantry.proc.kill('SIGCONT');
    }
    await eventually('c kills the container of the attempt it lost', async () =>
      (await containersOn(fleet, 'c', job.id)).length === 0 ? true : undefined,
    );
    const done = await a.waitFor(job.id, undefined, 30_000);
    assert.equal(done.state, 'succeeded');
    assert.equal(done.attempt, 2);
    assert.notEqual(done.node, 'c');
    const lines = (await a.call<string>('GET', `/v1/jobs/${job.id}/logs`)).text;
    assert.match(lines, /attempt-1/);
    assert.match(lines, /attempt-2/);
    await eventually('c rejoins the fleet', async () => ((await node(fleet, 'c', 'a')).state === 'up' ? true : undefined));
  });

  await t.test('a node gone for good: its jobs fail saying so, or run again elsewhere when asked', async () => {
    const [once, retried] = await landOn(fleet, 'c', async () => {
      const one = await a.submit({ image: TEST_IMAGE, command: ['sleep', '300'] });
      // The first attempt runs until its node dies; the next one ends at once.
      const two = await a.submit({
        image: TEST_IMAGE,
        command: ['sh', '-c', 'echo run-$GANTRY_ATTEMPT; if [ "$GANTRY_ATTEMPT" = 1 ]; then sleep 300; fi'],
        retry: { maxAttempts: 3, on: ['node_lost'] },
      });
      await a.waitFor(one.id, (x) => x.state === 'running');
      await a.waitFor(two.id, (x) => x.state === 'running');
      // Only a line already stored can be asked of the log once its node is dead.
      await eventually('run-1 stored', async () =>
        (await a.call<string>('GET', `/v1/jobs/${two.id}/logs`)).text.includes('run-1') ? true : undefined,
      );
      return [one, two];
    });
    const c = fleet.node('c');
    const killedAt = Date.now();
    await c.gantry.stop('SIGKILL');
    await c.dockerd.kill();
    const failed = await a.waitFor(once.id, undefined, 30_000);
    const settledMs = Date.now() - killedAt;
    assert.equal(failed.state, 'failed');
    assert.match(failed.reason ?? '', /node "c" was lost/);
    // The lease runs from c's last renewal, at most a third of a lease before the kill.
    assert.ok(settledMs >= (LEASE * 2000) / 3, `settled after ${settledMs} ms, before c's ${LEASE} s lease could have run out`);
    const second = await a.waitFor(retried.id, undefined, 30_000);
    assert.equal(second.state, 'succeeded', second.reason ?? '');
    assert.notEqual(second.node, 'c');
    assert.equal(second.attempt, 2);
    assert.match((await a.call<string>('GET', `/v1/jobs/${retried.id}/logs`)).text, /run-1\n(.*\n)?run-2/);
    assert.equal((await node(fleet, 'c', 'b')).state, 'lost');
    assert.deepEqual(
      (await node(fleet, 'c', 'b')).gpus.flatMap((g) => g.holders),
      [],
    );

    // c comes back long after it was declared lost: it rejoins as a new
    // member, removes the containers of the jobs the fleet settled without
    // it, and takes jobs again; the settled jobs stay as the fleet left them.
    await c.dockerd.restart();
    await c.restart();
    await eventually('c up again', async () => ((await node(fleet, 'c', 'a')).state === 'up' ? true : undefined));
    for (const id of [once.id, retried.id]) assert.deepEqual(await containersOn(fleet, 'c', id), [], `no container of ${id} left on c`);
    assert.equal((await a.job(once.id)).state, 'failed');
    assert.equal((await a.job(retried.id)).attempt, 2);
    const fresh = await a.submit({ image: TEST_IMAGE, command: ['echo', 'back'], placement: { node: 'c' } });
    assert.equal((await a.waitFor(fresh.id)).state, 'succeeded');
  });
});
