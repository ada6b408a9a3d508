// /v1/nodes on a live Gantry (the embedded store: a fleet of one node) with
// an in-memory container runtime: the node as the fleet sees it, who may
// drain it, what draining does to new and running jobs, placement checked
// at submit, and the per-node metrics.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { DOCUMENT_PATH } from '../../scripts/openapi.js';
import { OPENAPI_INFO } from '../../src/api/server.js';
import type { Job } from '../../src/model/job.js';
import type { Node } from '../../src/model/node.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { ADMIN_TOKEN, client, startGantry, TEST_IMAGE, tokensFile } from '../helpers/gantry.js';

const NODE = 'gpu-test-1.example';
const GPU_A = 'GPU-aaaaaaaa-1111-2222-3333-444444444444';
const GPU_B = 'GPU-bbbbbbbb-1111-2222-3333-444444444444';
const ALICE = 'alice-token-0123456789abcdef';
const BOB = 'bob-token-0123456789abcdefgh';

interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  errors?: { field: string; message: string }[];
}

async function fleetOfOne(t: TestContext) {
  const runtime = new FakeRuntime();
  const file = tokensFile([
    { owner: 'admin', scopes: ['admin'], token: ADMIN_TOKEN },
    { owner: 'alice', scopes: ['submit', 'read', 'cancel'], token: ALICE },
    { owner: 'bob', scopes: ['submit', 'read'], token: BOB },
  ]);
  const g = await startGantry(
    t,
    {
      GANTRY_TOKENS_FILE: file,
      GANTRY_NODE_NAME: NODE,
      GANTRY_NODE_LABELS: 'zone=a,tier=gold',
      GANTRY_GPUS: `${GPU_A}:81559,${GPU_B}:81559`,
      GANTRY_GPU_DRIVER: 'env',
    },
    { runtime },
  );
  return { g, runtime, alice: client(g.url, ALICE), bob: client(g.url, BOB) };
}

const job = (extra: Record<string, unknown> = {}) => ({ image: TEST_IMAGE, command: ['sleep', '300'], ...extra });

/** The value of the series with exactly these labels, or undefined when it is not exported. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] ?? '').match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? [];
    if (have.sort().join(',') === want) return Number(m[3]);
  }
  return undefined;
}

function assertProblem(r: { status: number; headers: Record<string, unknown>; body: unknown }, status: number): Problem {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.match(String(r.headers['content-type']), /^application\/problem\+json/);
  const p = r.body as Problem;
  assert.equal(p.status, status);
  return p;
}

test('GET /v1/nodes lists exactly this node: its name, labels, static GPUs, state up and a fresh heartbeat', async (t) => {
  const { g, alice } = await fleetOfOne(t);
  const list = await g.call<{ items: Node[] }>('GET', '/v1/nodes');
  assert.equal(list.status, 200, list.text);
  assert.deepEqual(
    list.body.items.map((n) => n.name),
    [NODE],
  );
  const [node] = list.body.items;
  assert.equal(node!.state, 'up');
  assert.equal(node!.drained, false);
  assert.deepEqual(node!.labels, { zone: 'a', tier: 'gold' });
  assert.ok(node!.heartbeatAgeSeconds >= 0 && node!.heartbeatAgeSeconds < 5, `heartbeat ${node!.heartbeatAgeSeconds} s ago`);
  assert.equal(node!.leaseSeconds, 30);
  assert.equal(node!.version, OPENAPI_INFO.version);
  assert.ok(Date.now() - Date.parse(node!.startedAt) < 60_000, `started at ${node!.startedAt}`);
  assert.deepEqual(node!.gpus, [
    { index: 0, uuid: GPU_A, name: 'static', memoryMiB: 81559, allocated: false, holders: [] },
    { index: 1, uuid: GPU_B, name: 'static', memoryMiB: 81559, allocated: false, holders: [] },
  ]);
  assert.equal(node!.running, 0);

  const one = await g.call<Node>('GET', `/v1/nodes/${NODE}`);
  assert.equal(one.status, 200, one.text);
  assert.equal(one.body.name, NODE);
  assert.deepEqual(one.body.labels, { zone: 'a', tier: 'gold' });

  // A token with only read (and no admin) lists the nodes too.
  const asAlice = await alice.call<{ items: Node[] }>('GET', '/v1/nodes');
  assert.equal(asAlice.status, 200, asAlice.text);
  assert.deepEqual(
    asAlice.body.items.map((n) => n.name),
    [NODE],
  );
  const noToken = await g.call('GET', '/v1/nodes', { token: null });
  assertProblem(noToken, 401);
});

test("a GPU's holders are the caller's own jobs, every job for an admin; running counts the node's jobs", async (t) => {
  const { g, alice, bob } = await fleetOfOne(t);
  const mine = await alice.submit(job({ gpus: { count: 1 } }));
  const theirs = await bob.submit(job({ gpus: { count: 1 } }));
  await g.waitFor(mine.id, (j) => j.state === 'running');
  await g.waitFor(theirs.id, (j) => j.state === 'running');

  const holders = (n: Node) => n.gpus.flatMap((gpu) => gpu.holders).sort();
  const asAdmin = (await g.call<Node>('GET', `/v1/nodes/${NODE}`)).body;
  assert.deepEqual(holders(asAdmin), [mine.id, theirs.id].sort(), 'an admin sees every holder');
  assert.equal(asAdmin.running, 2);
  const asAlice = (await alice.call<Node>('GET', `/v1/nodes/${NODE}`)).body;
  assert.deepEqual(holders(asAlice), [mine.id], 'alice sees only her own job');
  assert.equal(asAlice.gpus.filter((g) => g.allocated).length, 2, 'but she sees that both GPUs are in use');
  assert.equal(asAlice.running, 2, 'the count is not a secret');
  const aliceJob = await alice.job(mine.id);
  assert.equal(aliceJob.node, NODE, "the job's view names the node that runs it");
  assert.equal(aliceJob.attempt, 1);
});

test('only an admin drains: drained, a running job carries on and a new one stays queued saying why; undrained, it runs', async (t) => {
  const { g, runtime, alice } = await fleetOfOne(t);
  const before = await alice.submit(job());
  await g.waitFor(before.id, (j) => j.state === 'running');

  // Not an admin: 403, and nothing changed.
  const refused = assertProblem(await alice.call('POST', `/v1/nodes/${NODE}/drain`), 403);
  assert.match(refused.detail ?? '', /"admin" scope/);
  assert.equal((await g.call<Node>('GET', `/v1/nodes/${NODE}`)).body.drained, false);
  assertProblem(await alice.call('POST', `/v1/nodes/${NODE}/undrain`), 403);

  const drained = await g.call<Node>('POST', `/v1/nodes/${NODE}/drain`);
  assert.equal(drained.status, 200, drained.text);
  assert.equal(drained.body.name, NODE);
  assert.equal(drained.body.drained, true);
  assert.equal(drained.body.running, 1);
  assert.equal((await alice.call<{ items: Node[] }>('GET', '/v1/nodes')).body.items[0]!.drained, true, 'everyone sees the switch');
  const again = await g.call<Node>('POST', `/v1/nodes/${NODE}/drain`);
  assert.equal(again.status, 200, 'draining a drained node is no error');
  assert.equal(again.body.drained, true);

  const after = await alice.submit(job());
  assert.equal(after.state, 'queued');
  const waiting = await g.waitFor(after.id, (j) => /drained/.test(j.reason ?? ''), 10_000);
  assert.match(waiting.reason ?? '', new RegExp(`node "${NODE.replace(/\./g, '\\.')}" is drained`));
  await sleep(500);
  const still = await g.job(after.id);
  assert.equal(still.state, 'queued', 'nothing new starts on a drained node');
  assert.equal(still.node, null);
  await assert.rejects(runtime.containerOf(after.id, 50), /no container/);
  const running = await g.job(before.id);
  assert.equal(running.state, 'running', 'the job that ran before the drain carries on');

  // The running job finishes normally while the node is drained.
  runtime.exit((await runtime.containerOf(before.id)).id, 0);
  assert.equal((await g.waitFor(before.id)).state, 'succeeded');

  const undrained = await g.call<Node>('POST', `/v1/nodes/${NODE}/undrain`);
  assert.equal(undrained.status, 200, undrained.text);
  assert.equal(undrained.body.drained, false);
  const started = await g.waitFor(after.id, (j) => j.state === 'running', 10_000);
  assert.equal(started.node, NODE);
  assert.doesNotMatch(started.reason ?? '', /drained/);
});

test('an unknown node is a 404 problem; a malformed name a 422; an overlong one a 414', async (t) => {
  const { g } = await fleetOfOne(t);
  for (const [method, path] of [
    ['GET', '/v1/nodes/no-such-node'],
    ['POST', '/v1/nodes/no-such-node/drain'],
    ['POST', '/v1/nodes/no-such-node/undrain'],
  ] as const) {
    const p = assertProblem(await g.call(method, path), 404);
    assert.equal(p.type, 'https://gantry.dev/problems/not-found', path);
    assert.equal(p.detail, 'node no-such-node does not exist', path);
  }
  // The longest name a node may have is looked up (not refused as too long).
  const longest = `n${'x'.repeat(252)}`;
  assert.equal(assertProblem(await g.call('GET', `/v1/nodes/${longest}`), 404).detail, `node ${longest} does not exist`);
  assertProblem(await g.call('GET', `/v1/nodes/${longest}x`), 414);

  for (const bad of ['-leading-dash', 'has%20space', 'semi%3Bcolon', '%C3%A9t%C3%A9']) {
    const p = assertProblem(await g.call('POST', `/v1/nodes/${bad}/drain`), 422);
    assert.deepEqual(
      p.errors?.map((e) => e.field),
      ['params.name'],
      bad,
    );
  }
  // The admin-only check comes first: a non-admin learns nothing of names.
  assertProblem(await client(g.url, ALICE).call('POST', '/v1/nodes/no-such-node/drain'), 403);
  assert.equal((await g.call<Node>('GET', `/v1/nodes/${NODE}`)).body.drained, false, 'none of this drained the node');
});

test('placement naming another node, or labels this node lacks, is refused at submit (422 naming the field)', async (t) => {
  const { g, runtime } = await fleetOfOne(t);
  const elsewhere = assertProblem(await g.call('POST', '/v1/jobs', { body: job({ placement: { node: 'gpu-test-2' } }) }), 422);
  assert.deepEqual(
    elsewhere.errors?.map((e) => e.field),
    ['body.placement.node'],
  );
  assert.match(elsewhere.errors![0]!.message, /gpu-test-2/);

  const wrongZone = assertProblem(await g.call('POST', '/v1/jobs', { body: job({ placement: { nodeLabels: { zone: 'b' } } }) }), 422);
  assert.deepEqual(
    wrongZone.errors?.map((e) => e.field),
    ['body.placement.nodeLabels'],
  );
  assert.match(wrongZone.errors![0]!.message, /zone=b/);
  const unknownLabel = assertProblem(await g.call('POST', '/v1/jobs', { body: job({ placement: { nodeLabels: { rack: '7' } } }) }), 422);
  assert.deepEqual(
    unknownLabel.errors?.map((e) => e.field),
    ['body.placement.nodeLabels'],
  );
  assert.equal((await g.call<{ items: Job[] }>('GET', '/v1/jobs')).body.items.length, 0, 'no refused spec was stored');
  assert.equal(runtime.containers.size, 0);

  // What this node is does pass: its name and its labels.
  const here = await g.submit(job({ placement: { node: NODE, nodeLabels: { zone: 'a', tier: 'gold' } } }));
  assert.equal((await g.waitFor(here.id, (j) => j.state === 'running')).node, NODE);
});

test('metrics: this node in gantry_node_info, and the fleet by node (state, drain, heartbeat, GPUs, running jobs)', async (t) => {
  const { g } = await fleetOfOne(t);
  const scrape = async () => {
    const r = await g.call('GET', '/metrics');
    assert.equal(r.status, 200, r.text);
    return r.text;
  };
  let text = await scrape();
  assert.equal(metric(text, 'gantry_node_info', { node: NODE, version: OPENAPI_INFO.version }), 1);
  assert.equal(metric(text, 'gantry_nodes', { state: 'up', drained: 'false' }), 1);
  assert.equal(metric(text, 'gantry_nodes', { state: 'up', drained: 'true' }), 0);
  assert.equal(metric(text, 'gantry_nodes', { state: 'lost', drained: 'false' }), 0);
  assert.equal(metric(text, 'gantry_node_gpus', { node: NODE }), 2);
  assert.equal(metric(text, 'gantry_node_gpus_allocated', { node: NODE }), 0);
  assert.equal(metric(text, 'gantry_node_running_jobs', { node: NODE }), 0);
  const age = metric(text, 'gantry_node_heartbeat_age_seconds', { node: NODE });
  assert.ok(age !== undefined && age >= 0 && age < 5, `heartbeat age ${age}`);

  const gpuJob = await g.submit(job({ gpus: { count: 1 } }));
  const cpuJob = await g.submit(job());
  await g.waitFor(gpuJob.id, (j) => j.state === 'running');
  await g.waitFor(cpuJob.id, (j) => j.state === 'running');
  await g.call('POST', `/v1/nodes/${NODE}/drain`);
  text = await scrape();
  assert.equal(metric(text, 'gantry_node_gpus_allocated', { node: NODE }), 1);
  assert.equal(metric(text, 'gantry_node_running_jobs', { node: NODE }), 2);
  assert.equal(metric(text, 'gantry_nodes', { state: 'up', drained: 'true' }), 1);
  assert.equal(metric(text, 'gantry_nodes', { state: 'up', drained: 'false' }), 0);
});

test('live node answers conform to the committed OpenAPI document', async (t) => {
  const doc = JSON.parse(fs.readFileSync(DOCUMENT_PATH, 'utf8'));
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema({ ...doc, $id: 'gantry-openapi' });
  const check = (p: string, method: string, code: number, body: unknown, type = 'application/json') => {
    const pointer = ['paths', p, method, 'responses', String(code), 'content', type, 'schema']
      .map((x) => `/${x.replace(/~/g, '~0').replace(/\//g, '~1')}`)
      .join('');
    const validate = ajv.getSchema(`gantry-openapi#${pointer}`);
    assert.ok(validate, `the document has ${method.toUpperCase()} ${p} ${code} ${type}`);
    assert.ok(validate(body), `${method.toUpperCase()} ${p} ${code}: ${JSON.stringify(validate.errors)}`);
  };
  const { g, alice } = await fleetOfOne(t);
  await g.submit(job({ gpus: { count: 1 } }));
  check('/v1/nodes', 'get', 200, (await g.call('GET', '/v1/nodes')).body);
  check('/v1/nodes/{name}', 'get', 200, (await g.call('GET', `/v1/nodes/${NODE}`)).body);
  check('/v1/nodes/{name}', 'get', 404, (await g.call('GET', '/v1/nodes/nope')).body, 'application/problem+json');
  check('/v1/nodes/{name}', 'get', 422, (await g.call('GET', '/v1/nodes/-x')).body, 'application/problem+json');
  check('/v1/nodes/{name}/drain', 'post', 200, (await g.call('POST', `/v1/nodes/${NODE}/drain`)).body);
  check('/v1/nodes/{name}/drain', 'post', 403, (await alice.call('POST', `/v1/nodes/${NODE}/drain`)).body, 'application/problem+json');
  check('/v1/nodes/{name}/undrain', 'post', 200, (await g.call('POST', `/v1/nodes/${NODE}/undrain`)).body);
  check('/v1/nodes/{name}/undrain', 'post', 404, (await g.call('POST', '/v1/nodes/nope/undrain')).body, 'application/problem+json');
});
