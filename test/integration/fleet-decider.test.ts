/**
 * One decider for the fleet (GANTRY_FLEET_DECIDER=elected): Gantry nodes on
 * one real, throwaway PostgreSQL, answering over real HTTP, each on the fake
 * container runtime (many nodes in this one process), and, for the kill -9,
 * one node as a process of its own. What it promises, checked by doing it:
 * one node decides and the others run what it assigns them; the team's
 * maxRunning holds across nodes under concurrent submits; a waiting job
 * costs one preemption, not one per node; when the decider is killed
 * another node takes over and queued jobs still start; and the decider
 * relays the change feed (the others hold no listening connection), which
 * its followers leave for their own when it dies or freezes (SIGSTOP),
 * to follow the next decider's.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from '../../src/model/job.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { eventually } from '../helpers/fleet.js';
import { ADMIN_TOKEN, client, type InProcessGantry, spawnGantry, startGantry, TEST_IMAGE, tempDir, tokensFile } from '../helpers/gantry.js';
import { createDatabase, queryOnce, startPostgres, type TestPostgres } from '../helpers/postgres.js';

/** The node lease, in seconds (the decider's lease is the same). */
const LEASE = 4;
const ALICE = 'alice-token-0123456789abcdef';

let cluster: TestPostgres | null = null;
let databases = 0;
before(async () => {
  cluster = await startPostgres();
});
after(() => cluster?.destroy());

interface Node {
  name: string;
  g: InProcessGantry;
  runtime: FakeRuntime;
}

/** The env every node of a test's fleet shares. */
async function fleetEnv(extra: Record<string, string> = {}): Promise<Record<string, string>> {
  const url = await createDatabase(cluster!.url, `decider_${process.pid}_${++databases}`);
  return {
    GANTRY_DATABASE_URL: url,
    GANTRY_NODE_LEASE_SECONDS: String(LEASE),
    GANTRY_STOP_GRACE_SECONDS: '1',
    GANTRY_FLEET_DECIDER: 'elected',
    GANTRY_GPU_DRIVER: 'env',
    ...extra,
  };
}

async function startNode(
  t: TestContext,
  env: Record<string, string>,
  name: string,
  o: { gpus?: number; labels?: string } = {},
): Promise<Node> {
  const runtime = new FakeRuntime();
  const gpus = Array.from({ length: o.gpus ?? 0 }, (_, i) => `GPU-${name}-0000-0000-000${i}:81559`).join(',') || 'none';
  const g = await startGantry(t, { ...env, GANTRY_NODE_NAME: name, GANTRY_GPUS: gpus, GANTRY_NODE_LABELS: o.labels ?? '' }, { runtime });
  return { name, g, runtime };
}

/** The fleet's decider as the database holds it. */
async function deciderRow(url: string): Promise<{ node: string; term: number } | undefined> {
  const r = await queryOnce(url, 'SELECT node, term::int AS term FROM decider WHERE expires_at > now()');
  return r.rows[0] as { node: string; term: number } | undefined;
}

/** The nodes whose change feed listens to PostgreSQL itself, by name. */
async function listeners(url: string): Promise<string[]> {
  const r = await queryOnce(
    url,
    `SELECT split_part(application_name, ':', 2) AS node FROM pg_stat_activity
     WHERE datname = current_database() AND application_name LIKE 'gantry:%:feed' ORDER BY 1`,
  );
  return r.rows.map((row) => row.node as string);
}

/** The containers of a job on every node's runtime, with the node each is on. */
function containersOf(nodes: readonly Node[], jobId: string) {
  return nodes.flatMap((n) =>
    [...n.runtime.containers.values()].filter((c) => c.spec.labels['dev.gantry.job-id'] === jobId).map((c) => ({ node: n.name, c })),
  );
}

const running = (nodes: readonly Node[]) => nodes.flatMap((n) => [...n.runtime.containers.values()].filter((c) => c.state === 'running'));

test('one elected node decides; every node runs only what it is assigned, each job once', async (t) => {
  const env = await fleetEnv();
  const nodes = [
    await startNode(t, env, 'a', { gpus: 1 }),
    await startNode(t, env, 'b', { gpus: 1 }),
    await startNode(t, env, 'c', { gpus: 1 }),
  ];
  const holder = await eventually('a decider', () => deciderRow(env.GANTRY_DATABASE_URL!));
  assert.ok(['a', 'b', 'c'].includes(holder.node));

  const jobs = await Promise.all(nodes.map((n) => n.g.submit({ image: TEST_IMAGE, command: ['sleep', '60'], gpus: { count: 1 } })));
  const started = await Promise.all(jobs.map((j) => nodes[0]!.g.waitFor(j.id, (x) => x.state === 'running', 30_000)));
  assert.deepEqual(started.map((j) => j.node).sort(), ['a', 'b', 'c'], 'three one-GPU jobs on the three one-GPU nodes');
  for (const j of started) {
    assert.deepEqual(
      containersOf(nodes, j.id).map((x) => x.node),
      [j.node],
      'one container, on the node the job names',
    );
  }
  const waiting = await nodes[1]!.g.submit({ image: TEST_IMAGE, command: ['true'], gpus: { count: 1 } });
  const views = await eventually('the fleet’s reason on every node', async () => {
    const seen = await Promise.all(nodes.map((n) => n.g.job(waiting.id)));
    return seen.every((v) => v.state === 'queued' && v.waiting !== null && v.reason === seen[0]!.reason) ? seen : undefined;
  });
  assert.ok(views[0]!.reason, 'a queued job says why it waits, the same through every node');
  assert.equal((await deciderRow(env.GANTRY_DATABASE_URL!))?.term, holder.term, 'the decider kept its term throughout');
  await eventually('the others following the decider’s relay', async () =>
    (await listeners(env.GANTRY_DATABASE_URL!)).join() === holder.node ? true : undefined,
  );
  // The metrics say who decides, and what it did: only the holder shows a term, passes and assignments, and relays to the others.
  for (const n of nodes) {
    const m = await n.g.call('GET', '/metrics');
    const value = (series: string) =>
      Number(
        m.text
          .split('\n')
          .find((line) => line.startsWith(`${series} `))
          ?.slice(series.length + 1),
      );
    const mine = n.name === holder.node;
    assert.equal(value('gantry_fleet_decider_term'), mine ? holder.term : 0, `${n.name}: its term`);
    assert.ok(
      mine
        ? value('gantry_fleet_decider_decisions_total{kind="assign"}') >= 3
        : value('gantry_fleet_decider_decisions_total{kind="assign"}') === 0,
      `${n.name}: assignments`,
    );
    assert.ok(
      mine ? value('gantry_fleet_decider_passes_total{result="wrote"}') >= 1 : value('gantry_fleet_decider_pass_seconds_count') === 0,
      `${n.name}: passes`,
    );
    assert.equal(value('gantry_fleet_relay_followers'), mine ? 2 : 0, `${n.name}: relay followers`);
    assert.equal(value('gantry_fleet_relay_following'), mine ? 0 : 1, `${n.name}: following the relay`);
  }

  for (const n of nodes) for (const c of n.runtime.containers.values()) if (c.state === 'running') n.runtime.exit(c.id, 0);
  const done = await nodes[2]!.g.waitFor(waiting.id, (x) => x.state === 'running', 30_000);
  assert.equal(containersOf(nodes, waiting.id).length, 1);
  assert.ok(done.node);
});

test("a team's maxRunning holds across three nodes under concurrent submits", async (t) => {
  const dir = tempDir('gantry-quotas-');
  const quotas = path.join(dir, 'quotas.json');
  fs.writeFileSync(quotas, JSON.stringify([{ name: 'ml', owners: ['alice'], maxRunning: 2 }]));
  const tokens = tokensFile([
    { owner: 'admin', scopes: ['admin'], token: ADMIN_TOKEN },
    { owner: 'alice', scopes: ['submit', 'read', 'cancel'], token: ALICE },
  ]);
  const env = await fleetEnv({ GANTRY_QUOTAS_FILE: quotas, GANTRY_TOKENS_FILE: tokens });
  const nodes = [await startNode(t, env, 'a'), await startNode(t, env, 'b'), await startNode(t, env, 'c')];
  await eventually('a decider', () => deciderRow(env.GANTRY_DATABASE_URL!));
  const alice = nodes.map((n) => client(n.g.url, ALICE));

  const TOTAL = 9;
  const jobs = await Promise.all(
    Array.from({ length: TOTAL }, (_, i) => alice[i % 3]!.submit({ image: TEST_IMAGE, command: ['sleep', '60'] })),
  );
  let ended = 0;
  let peak = 0;
  while (ended < TOTAL) {
    const want = Math.min(2, TOTAL - ended);
    await eventually(`${want} of alice's jobs running`, async () => (running(nodes).length >= want ? true : undefined));
    // Let every node's passes and the change feed catch up: an overshoot would start a third job meanwhile.
    await sleep(700);
    const now = running(nodes);
    peak = Math.max(peak, now.length);
    assert.ok(now.length <= 2, `${now.length} of alice's jobs run at once across the fleet; her team's maxRunning is 2`);
    for (const n of nodes) {
      for (const c of n.runtime.containers.values()) {
        if (c.state !== 'running') continue;
        n.runtime.exit(c.id, 0);
        ended++;
      }
    }
  }
  const finals = await Promise.all(jobs.map((j) => alice[0]!.waitFor(j.id)));
  assert.deepEqual(new Set(finals.map((j) => j.state)), new Set(['succeeded']));
  assert.equal(peak, 2);
});

test('a waiting job gets one preemption in the fleet, not one per node', async (t) => {
  const env = await fleetEnv();
  const nodes = [await startNode(t, env, 'a', { gpus: 1 }), await startNode(t, env, 'b', { gpus: 1 })];
  await eventually('a decider', () => deciderRow(env.GANTRY_DATABASE_URL!));
  const g = nodes[0]!.g;
  const low = await Promise.all(
    [0, 1].map(() => g.submit({ image: TEST_IMAGE, command: ['sleep', '60'], gpus: { count: 1 }, preemptible: true, priority: 0 })),
  );
  await Promise.all(low.map((j) => g.waitFor(j.id, (x) => x.state === 'running', 30_000)));
  const high = await nodes[1]!.g.submit({ image: TEST_IMAGE, command: ['sleep', '60'], gpus: { count: 1 }, priority: 10 });
  await g.waitFor(high.id, (x) => x.state === 'running', 30_000);
  // Every node's passes run again meanwhile: a second preemption would stop the other low job.
  await sleep(2000);
  const views = await Promise.all(low.map((j) => g.job(j.id)));
  const preempted = views.filter((v) => v.attempts.some((a) => a.cause === 'preempted'));
  assert.equal(preempted.length, 1, `one low job preempted for the high one: ${views.map((v) => `${v.id} ${v.state}`).join(', ')}`);
  const other = views.find((v) => !preempted.includes(v)) as Job;
  assert.equal(other.state, 'running', 'the other low job runs on');
});

test('the decider killed with -9: another node takes over within the lease and queued jobs still start', async (t) => {
  const env = await fleetEnv();
  // The decider first, as a process of its own (labelled so that no job runs there), then two workers in this process.
  const spare = await spawnGantry(tempDir('gantry-spare-'), {
    ...env,
    GANTRY_NODE_NAME: 'spare',
    GANTRY_NODE_LABELS: 'role=spare',
    GANTRY_GPUS: 'none',
  });
  t.after(() => spare.stop('SIGKILL'));
  const first = await eventually('the spare node deciding', async () => {
    const row = await deciderRow(env.GANTRY_DATABASE_URL!);
    return row?.node === 'spare' ? row : undefined;
  });
  const nodes = [await startNode(t, env, 'a', { labels: 'role=worker' }), await startNode(t, env, 'b', { labels: 'role=worker' })];
  // The decider relays the change feed: it alone listens to PostgreSQL.
  await eventually('the workers following the decider’s relay', async () =>
    (await listeners(env.GANTRY_DATABASE_URL!)).join() === 'spare' ? true : undefined,
  );
  const spec = { image: TEST_IMAGE, command: ['sleep', '60'], placement: { nodeLabels: { role: 'worker' } } };
  const before = await nodes[0]!.g.submit(spec);
  await nodes[0]!.g.waitFor(before.id, (x) => x.state === 'running', 30_000);

  await spare.stop('SIGKILL');
  const killedAt = Date.now();
  const queued = await Promise.all([nodes[0]!.g.submit(spec), nodes[1]!.g.submit(spec)]);
  const started = await Promise.all(queued.map((j) => nodes[1]!.g.waitFor(j.id, (x) => x.state === 'running', 6 * LEASE * 1000)));
  const failover = Date.now() - killedAt;
  const now = await deciderRow(env.GANTRY_DATABASE_URL!);
  assert.ok(now && ['a', 'b'].includes(now.node), `a live node decides now (${JSON.stringify(now)})`);
  assert.ok(now.term > first.term, 'under a new term');
  for (const j of started)
    assert.deepEqual(
      containersOf(nodes, j.id).map((x) => x.node),
      [j.node],
    );
  t.diagnostic(`jobs queued after the kill started ${failover} ms after it (lease ${LEASE} s)`);
  // The new decider relays in turn: the other worker follows it.
  await eventually('the other worker following the new decider’s relay', async () =>
    (await listeners(env.GANTRY_DATABASE_URL!)).join() === now.node ? true : undefined,
  );
  // A cancel asked of the node that does not run the job reaches the run, through the relay.
  const job = started[0]!;
  const asked = nodes.find((n) => n.name !== job.node)!;
  const cancel = await asked.g.call('POST', `/v1/jobs/${job.id}/cancel`);
  assert.ok(cancel.status === 200 || cancel.status === 202, cancel.text);
  await asked.g.waitFor(job.id, (x) => x.state === 'cancelled', 15_000);
});

test('the decider frozen (SIGSTOP): its followers leave its silent relay and listen, a new decider relays, and a cancel still reaches the run', async (t) => {
  const env = await fleetEnv();
  const url = env.GANTRY_DATABASE_URL!;
  const spare = await spawnGantry(tempDir('gantry-spare-'), {
    ...env,
    GANTRY_NODE_NAME: 'spare',
    GANTRY_NODE_LABELS: 'role=spare',
    GANTRY_GPUS: 'none',
  });
  t.after(async () => {
    spare.proc.kill('SIGCONT');
    await spare.stop('SIGKILL');
  });
  await eventually('the spare node deciding', async () => ((await deciderRow(url))?.node === 'spare' ? true : undefined));
  const nodes = [await startNode(t, env, 'a', { labels: 'role=worker' }), await startNode(t, env, 'b', { labels: 'role=worker' })];
  await eventually('the workers following the spare node’s relay', async () =>
    (await listeners(url)).join() === 'spare' ? true : undefined,
  );
  const spec = { image: TEST_IMAGE, command: ['sleep', '60'], placement: { nodeLabels: { role: 'worker' } } };
  const job = await nodes[0]!.g.waitFor((await nodes[0]!.g.submit(spec)).id, (x) => x.state === 'running', 30_000);

  spare.proc.kill('SIGSTOP');
  const frozenAt = Date.now();
  // Its relay goes silent with it (its connection to PostgreSQL stays open, frozen): the workers listen themselves.
  const workers = async () => (await listeners(url)).filter((n) => n !== 'spare');
  const listeningAfter = await eventually('the workers listening themselves', async () =>
    (await workers()).join() === 'a,b' ? Date.now() - frozenAt : undefined,
  );
  const now = await eventually('a worker deciding', async () => {
    const row = await deciderRow(url);
    return row && row.node !== 'spare' ? row : undefined;
  });
  await eventually('the other worker following the new decider’s relay', async () =>
    (await workers()).join() === now.node ? true : undefined,
  );
  const asked = nodes.find((n) => n.name !== job.node)!;
  const cancel = await asked.g.call('POST', `/v1/jobs/${job.id}/cancel`);
  assert.ok(cancel.status === 200 || cancel.status === 202, cancel.text);
  await asked.g.waitFor(job.id, (x) => x.state === 'cancelled', 15_000);
  assert.equal(containersOf(nodes, job.id).filter((x) => x.c.state === 'running').length, 0, 'the run stopped');
  t.diagnostic(`the workers listened themselves ${listeningAfter} ms after the freeze (relay silence 6 s)`);
});
