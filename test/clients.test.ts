/**
 * Clients generated from the committed openapi/openapi.json, used for real
 * against a live Gantry on the real engine:
 * - TypeScript: openapi-typescript types (tools/ts-client/src/schema.d.ts,
 *   committed) with openapi-fetch;
 * - Python: openapi-python-client, generated here from the committed document.
 * Tooling comes from `bash scripts/ci-openapi.sh setup`.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { createGantryClient, type JobSpec, waitForJob } from '../tools/ts-client/src/index.js';
import { ADMIN_TOKEN, ROOT, startGantry, TEST_IMAGE, tempDir } from './helpers/gantry.js';

const run = promisify(execFile);
const TS_TOOL = path.join(ROOT, 'tools/ts-client');
const PY_TOOL = path.join(ROOT, 'tools/py-client');
const PYTHON = path.join(PY_TOOL, '.venv/bin/python');
const SETUP = 'run `bash scripts/ci-openapi.sh setup` first';

function requireTool(file: string, what: string): void {
  assert.ok(fs.existsSync(file), `${what} is not installed (${path.relative(ROOT, file)}); ${SETUP}`);
}

test('TypeScript: the committed types are what openapi-typescript makes of the committed document', async () => {
  const bin = path.join(TS_TOOL, 'node_modules/.bin/openapi-typescript');
  requireTool(bin, 'openapi-typescript');
  const out = path.join(tempDir('gantry-ts-types-'), 'schema.d.ts');
  await run(bin, [path.join(ROOT, 'openapi/openapi.json'), '--output', out], { cwd: TS_TOOL });
  assert.equal(
    fs.readFileSync(out, 'utf8'),
    fs.readFileSync(path.join(TS_TOOL, 'src/schema.d.ts'), 'utf8'),
    'tools/ts-client/src/schema.d.ts is stale: run `npm run generate` in tools/ts-client',
  );
});

test('TypeScript client (openapi-fetch): submit a job, wait for it, read its logs', async (t) => {
  const g = await startGantry(t);
  const client = createGantryClient(g.url, ADMIN_TOKEN);
  const spec: JobSpec = {
    image: TEST_IMAGE,
    command: ['sh', '-c', 'echo hello from typescript; echo to stderr >&2; echo 42'],
    labels: { client: 'typescript' },
    timeoutSeconds: 60,
  };
  const submitted = await client.POST('/v1/jobs', { body: spec, params: { header: { 'idempotency-key': 'ts-e2e-1' } } });
  assert.equal(submitted.response.status, 201, JSON.stringify(submitted.error));
  const job = submitted.data!;
  assert.equal(submitted.response.headers.get('location'), `/v1/jobs/${job.id}`);
  assert.equal(job.state, 'queued');

  // The same Idempotency-Key and body answer the same job.
  const again = await client.POST('/v1/jobs', { body: spec, params: { header: { 'idempotency-key': 'ts-e2e-1' } } });
  assert.equal(again.response.status, 200);
  assert.equal(again.data!.id, job.id);

  const done = await waitForJob(client, job.id, { intervalMs: 100 });
  assert.equal(done.state, 'succeeded');
  assert.equal(done.exitCode, 0);
  assert.equal(done.result, '42');
  assert.deepEqual(done.labels, { client: 'typescript' });

  const logs = await client.GET('/v1/jobs/{id}/logs', { params: { path: { id: job.id } }, parseAs: 'text' });
  assert.equal(logs.response.status, 200);
  assert.deepEqual(logs.data!.split('\n').filter(Boolean).sort(), ['42', 'hello from typescript', 'to stderr']);
  const stdout = await client.GET('/v1/jobs/{id}/logs', {
    params: { path: { id: job.id }, query: { stream: 'stdout', tail: 1 } },
    parseAs: 'text',
  });
  assert.equal(stdout.data, '42\n');

  // Errors arrive typed as the shared Problem.
  const missing = await client.GET('/v1/jobs/{id}', { params: { path: { id: 'no-such-job' } } });
  assert.equal(missing.response.status, 404);
  assert.equal(missing.error?.type, 'https://gantry.dev/problems/not-found');
  const refused = await client.POST('/v1/jobs', { body: { image: 'docker.io/library/alpine:3', command: ['true'] } });
  assert.equal(refused.response.status, 422);
  assert.ok(refused.error?.errors?.some((e) => e.field === 'body.image'));

  const page = await client.GET('/v1/jobs', { params: { query: { label: 'client=typescript' } } });
  assert.deepEqual(
    page.data?.items.map((j) => j.id),
    [job.id],
  );
});

test('Python client (openapi-python-client): generated from the committed document; submit, wait, read logs', async (t) => {
  requireTool(path.join(PY_TOOL, '.venv/bin/openapi-python-client'), 'openapi-python-client');
  const out = tempDir('gantry-py-client-');
  await run(
    path.join(PY_TOOL, '.venv/bin/openapi-python-client'),
    [
      'generate',
      '--path',
      path.join(ROOT, 'openapi/openapi.json'),
      '--config',
      path.join(PY_TOOL, 'config.yml'),
      '--output-path',
      path.join(out, 'gantry_client'),
      '--meta',
      'none',
    ],
    { cwd: out },
  );
  assert.ok(fs.existsSync(path.join(out, 'gantry_client/api/jobs/submit_job.py')), 'generated submit_job');

  const g = await startGantry(t);
  const { stdout } = await run(PYTHON, [path.join(PY_TOOL, 'e2e.py'), g.url, ADMIN_TOKEN, TEST_IMAGE], {
    env: { ...process.env, GANTRY_PY_CLIENT_DIR: out },
    timeout: 90_000,
  });
  const seen = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
  assert.equal(seen.status, 201);
  assert.equal(seen.location, `/v1/jobs/${seen.id as string}`);
  assert.equal(seen.state, 'succeeded');
  assert.equal(seen.exitCode, 0);
  assert.equal(seen.result, 'done');
  assert.deepEqual(seen.labels, { client: 'python' });
  assert.deepEqual((seen.logs as string).split('\n').filter(Boolean).sort(), ['done', 'hello from python', 'second line']);
  assert.equal(seen.missingStatus, 404);
  assert.equal(seen.missingType, 'https://gantry.dev/problems/not-found');
  // What Python saw is what the server holds.
  const job = await g.job(seen.id as string);
  assert.equal(job.state, 'succeeded');
  assert.equal(job.spec.labels?.client, 'python');
  fs.rmSync(out, { recursive: true, force: true });
});
