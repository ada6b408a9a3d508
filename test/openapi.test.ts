/**
 * The OpenAPI document: generated from the route schemas, committed,
 * served, valid under a real OpenAPI 3.1 validator, complete for every /v1
 * operation, with examples that match their schemas, and a drift check that
 * fails when a schema changes without the document being regenerated.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { request } from 'undici';
import { DOCUMENT_PATH, generateOpenapi } from '../scripts/openapi.js';
import { ADMIN_TOKEN, ROOT, startGantry, TEST_IMAGE, tempDir } from './helpers/gantry.js';
import { readSse } from './helpers/sse.js';

const run = promisify(execFile);
// biome-ignore lint/suspicious/noExplicitAny: the document is walked as untyped JSON, field by field
type Json = Record<string, any>;

const committedText = () => fs.readFileSync(DOCUMENT_PATH, 'utf8');
const committed = (): Json => JSON.parse(committedText());
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

function operations(doc: Json): { method: string; path: string; op: Json }[] {
  return Object.entries(doc.paths as Json).flatMap(([p, item]) =>
    Object.entries(item as Json)
      .filter(([m]) => METHODS.includes(m))
      .map(([method, op]) => ({ method, path: p, op: op as Json })),
  );
}

/** JSON Schema 2020-12 validation against any location of the document. */
function schemaChecker(doc: Json) {
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema({ ...doc, $id: 'gantry-openapi' });
  return (pointer: string, value: unknown): string[] => {
    const validate = ajv.getSchema(`gantry-openapi#${pointer}`);
    assert.ok(validate, `no schema at ${pointer}`);
    return validate(value) ? [] : (validate.errors ?? []).map((e) => `${pointer}${e.instancePath} ${e.message}`);
  };
}
const ptr = (...parts: string[]) => parts.map((p) => `/${p.replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');

test('the committed openapi/openapi.json is exactly what the code generates', async () => {
  assert.equal(await generateOpenapi(), committedText(), 'run `npm run openapi` and commit openapi/openapi.json');
});

test('a real OpenAPI 3.1 validator accepts the document (and rejects a broken copy)', async () => {
  const validator = new Validator();
  const res = await validator.validate(committed());
  assert.deepEqual(res.errors ?? [], [], 'validation errors');
  assert.equal(res.valid, true);
  assert.equal(validator.version, '3.1');

  // The validator is not a rubber stamp: a response without a description and
  // an operation with a bad parameter location are refused.
  const broken = committed();
  delete broken.paths['/v1/jobs'].post.responses['201'].description;
  broken.paths['/v1/jobs'].get.parameters[0].in = 'body';
  const bad = await new Validator().validate(broken);
  assert.equal(bad.valid, false);
});

test('every /v1 operation has an id, summary, tag, bearer security, problem+json errors and examples', () => {
  const doc = committed();
  assert.equal(doc.openapi, '3.1.0');
  assert.deepEqual(doc.components.securitySchemes.bearer, {
    type: 'http',
    scheme: 'bearer',
    description: doc.components.securitySchemes.bearer.description,
  });
  const tags = new Set((doc.tags as { name: string }[]).map((t) => t.name));
  const ids = new Set<string>();
  const v1 = operations(doc).filter((o) => o.path.startsWith('/v1/'));
  assert.ok(v1.length >= 6, `found ${v1.length} /v1 operations`);
  for (const { method, path: p, op } of v1) {
    const at = `${method.toUpperCase()} ${p}`;
    assert.match(op.operationId ?? '', /^[a-z][A-Za-z]+$/, `${at}: operationId`);
    assert.ok(!ids.has(op.operationId), `${at}: operationId ${op.operationId} is unique`);
    ids.add(op.operationId);
    assert.ok(op.summary?.length > 3, `${at}: summary`);
    assert.ok(op.tags?.length >= 1 && op.tags.every((t: string) => tags.has(t)), `${at}: tags declared at the top`);
    assert.deepEqual(op.security, [{ bearer: [] }], `${at}: bearer security`);
    assert.ok(op.responses['401'], `${at}: documents 401`);
    // Every operation but the token's own description needs a scope.
    if (op.operationId !== 'getTokenInfo') assert.ok(op.responses['403'], `${at}: documents 403`);
    if (p.includes('{')) {
      for (const code of ['404', '414', '422']) assert.ok(op.responses[code], `${at}: a path parameter → documents ${code}`);
    }
    if (op.requestBody) {
      for (const code of ['400', '413', '415', '422']) assert.ok(op.responses[code], `${at}: a body → documents ${code}`);
      for (const media of Object.values(op.requestBody.content as Json)) assert.ok(media.example !== undefined, `${at}: request example`);
    }
    for (const [code, res] of Object.entries(op.responses as Record<string, Json>)) {
      assert.ok(res.description, `${at} ${code}: description`);
      const media = Object.entries(res.content ?? {}) as [string, Json][];
      assert.ok(media.length > 0, `${at} ${code}: content`);
      if (Number(code) >= 400) {
        assert.deepEqual(
          media.map(([t]) => t),
          ['application/problem+json'],
          `${at} ${code}: problem+json`,
        );
        assert.deepEqual(media[0]![1].schema, { $ref: '#/components/schemas/Problem' }, `${at} ${code}: shared Problem schema`);
      }
      for (const [type, m] of media) assert.ok(m.example !== undefined || m.examples !== undefined, `${at} ${code} ${type}: example`);
    }
  }
  for (const name of [
    'Job',
    'JobSpec',
    'JobSpecInput',
    'JobList',
    'JobState',
    'GpuRequest',
    'Gpu',
    'GpuList',
    'Mount',
    'Resources',
    'Problem',
    'FieldError',
    'LogLine',
    'LogStreamEvent',
    'LogEvent',
    'StatusEvent',
    'EndEvent',
  ]) {
    assert.ok(doc.components.schemas[name], `component ${name}`);
  }
  // Nothing unreferenced and no duplicate input/output pair left over.
  for (const name of Object.keys(doc.components.schemas)) {
    if (name.endsWith('Input')) assert.notDeepEqual(doc.components.schemas[name], doc.components.schemas[name.slice(0, -5)], name);
  }
  const created = doc.paths['/v1/jobs'].post.responses['201'];
  assert.ok(created.headers?.Location, '201 documents the Location header');
});

test('the logs operation documents text/plain and text/event-stream with each SSE event and its data', () => {
  const doc = committed();
  const ok = doc.paths['/v1/jobs/{id}/logs'].get.responses['200'].content;
  assert.deepEqual(Object.keys(ok).sort(), ['text/event-stream', 'text/plain']);
  assert.equal(ok['text/plain'].schema.type, 'string');
  const union = doc.components.schemas.LogStreamEvent;
  assert.deepEqual(ok['text/event-stream'].schema, { $ref: '#/components/schemas/LogStreamEvent' });
  assert.equal(union.discriminator.propertyName, 'event');
  const byEvent: Record<string, string> = {};
  for (const { $ref } of union.oneOf as { $ref: string }[]) {
    const ev = doc.components.schemas[$ref.split('/').pop()!];
    byEvent[ev.properties.event.const] = ev.properties.data.contentSchema.$ref;
    assert.equal(ev.properties.data.contentMediaType, 'application/json');
  }
  assert.deepEqual(byEvent, {
    log: '#/components/schemas/LogLine',
    status: '#/components/schemas/Job',
    end: '#/components/schemas/Job',
    telemetry: '#/components/schemas/GpuSample',
    'gpu-warning': '#/components/schemas/GpuWarning',
  });
  assert.deepEqual(doc.components.schemas.LogEvent.required.sort(), ['data', 'event', 'id']);
});

test('every example in the document validates against its schema', () => {
  const doc = committed();
  const check = schemaChecker(doc);
  const errors: string[] = [];
  let count = 0;
  for (const [name, schema] of Object.entries(doc.components.schemas as Record<string, Json>)) {
    if (schema.example === undefined) continue;
    count++;
    errors.push(...check(ptr('components', 'schemas', name), schema.example));
  }
  for (const { method, path: p, op } of operations(doc)) {
    const holders: [string[], Json][] = [
      ...(op.requestBody ? [[['requestBody'], op.requestBody] as [string[], Json]] : []),
      ...Object.entries(op.responses as Json).map(([c, r]) => [['responses', c], r] as [string[], Json]),
    ];
    for (const [where, holder] of holders) {
      for (const [type, media] of Object.entries((holder.content ?? {}) as Record<string, Json>)) {
        if (media.example === undefined) continue;
        count++;
        const at = ptr('paths', p, method, ...where, 'content', type, 'schema');
        errors.push(...check(at, media.example));
        // SSE: the data of the example event decodes to its contentSchema.
        if (type === 'text/event-stream') {
          const evName = `${media.example.event[0].toUpperCase()}${media.example.event.slice(1)}Event`;
          const target = doc.components.schemas[evName].properties.data.contentSchema.$ref.slice(1);
          errors.push(...check(target, JSON.parse(media.example.data)));
        }
      }
    }
  }
  assert.deepEqual(errors, []);
  assert.ok(count >= 20, `checked ${count} examples`);
});

test('npm run openapi:check fails when a schema changes without regenerating, and passes once regenerated', async () => {
  // A copy of the project whose JobSpec gains a field, with the committed document as it is.
  const copy = tempDir('gantry-drift-');
  for (const entry of ['src', 'scripts', 'openapi', 'package.json', 'tsconfig.json']) {
    fs.cpSync(path.join(ROOT, entry), path.join(copy, entry), { recursive: true });
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(copy, 'node_modules'), 'dir');
  const schemaFile = path.join(copy, 'src/model/job.ts');
  const source = fs.readFileSync(schemaFile, 'utf8');
  const idAt = source.indexOf("id: 'JobSpec'");
  const metaAt = source.lastIndexOf('.meta(', idAt);
  assert.ok(idAt > 0 && metaAt > 0, 'found JobSpec and its .meta() in src/model/job.ts');
  fs.writeFileSync(
    schemaFile,
    `${source.slice(0, metaAt)}.extend({ driftProbe: z.string().optional().describe('added by the drift test') })\n  ${source.slice(metaAt)}`,
  );
  const script = ['--import', 'tsx', 'scripts/openapi.ts'];
  const opts = { cwd: copy, env: { ...process.env, NODE_NO_WARNINGS: '1' } };

  const drift = await run(process.execPath, [...script, '--check'], opts).then(
    () => assert.fail('the check passed although JobSpec changed'),
    (err: { code: number; stderr: string }) => err,
  );
  assert.equal(drift.code, 1);
  assert.match(drift.stderr, /differs from the document the code generates/);
  assert.match(drift.stderr, /\/components\/schemas\/JobSpec(Input)?\/properties\/driftProbe: only in the code/);

  const wrote = await run(process.execPath, script, opts);
  assert.match(wrote.stdout, /wrote openapi\/openapi.json/);
  const regenerated = JSON.parse(fs.readFileSync(path.join(copy, 'openapi/openapi.json'), 'utf8'));
  assert.equal(regenerated.components.schemas.JobSpecInput.properties.driftProbe.description, 'added by the drift test');
  const clean = await run(process.execPath, [...script, '--check'], opts);
  assert.match(clean.stdout, /matches the code/);
  fs.rmSync(copy, { recursive: true, force: true });
});

test('a live Gantry serves the document at /openapi.json and Swagger UI at /docs, without a token', async (t) => {
  const g = await startGantry(t);
  const doc = await g.call('GET', '/openapi.json', { token: null });
  assert.equal(doc.status, 200);
  assert.match(String(doc.headers['content-type']), /^application\/json/);
  assert.deepEqual(doc.body, committed());
  const ui = await request(`${g.url}/docs/`, { maxRedirections: 0 } as never);
  const html = await ui.body.text();
  assert.ok(ui.statusCode === 200 || ui.statusCode === 302, `GET /docs/ → ${ui.statusCode}`);
  const page =
    ui.statusCode === 302 ? await (await request(new URL(String(ui.headers.location), `${g.url}/docs/`).href)).body.text() : html;
  assert.match(page, /swagger-ui/i);
});

test('live responses, headers and SSE events conform to the document', async (t) => {
  const doc = committed();
  const check = schemaChecker(doc);
  const g = await startGantry(t);
  const errors: string[] = [];
  const res = (p: string, m: string, code: number, type = 'application/json') =>
    ptr('paths', p, m, 'responses', String(code), 'content', type, 'schema');

  const sub = await g.call('POST', '/v1/jobs', { body: { image: TEST_IMAGE, command: ['sh', '-c', 'echo one; echo two >&2'] } });
  assert.equal(sub.status, 201);
  errors.push(...check(res('/v1/jobs', 'post', 201), sub.body));
  assert.match(String(sub.headers.location), /^\/v1\/jobs\/[\w-]+$/);
  const id = (sub.body as { id: string }).id;
  const done = await g.waitFor(id);
  errors.push(...check(res('/v1/jobs/{id}', 'get', 200), done));
  errors.push(...check(res('/v1/jobs', 'get', 200), (await g.call('GET', '/v1/jobs?limit=5')).body));
  errors.push(...check(res('/v1/gpus', 'get', 200), (await g.call('GET', '/v1/gpus')).body));
  errors.push(...check(res('/v1/jobs/{id}/cancel', 'post', 202), (await g.call('POST', `/v1/jobs/${id}/cancel`)).body));

  const missing = await g.call('GET', '/v1/jobs/no-such-job');
  assert.equal(missing.status, 404);
  errors.push(...check(res('/v1/jobs/{id}', 'get', 404, 'application/problem+json'), missing.body));
  const unauth = await g.call('GET', '/v1/jobs', { token: null });
  assert.equal(unauth.status, 401);
  errors.push(...check(res('/v1/jobs', 'get', 401, 'application/problem+json'), unauth.body));
  const tooLong = await g.call('GET', `/v1/jobs/${'x'.repeat(300)}/logs`);
  assert.equal(tooLong.status, 414);
  assert.match(String(tooLong.headers['content-type']), /application\/problem\+json/);
  errors.push(...check(res('/v1/jobs/{id}/logs', 'get', 414, 'application/problem+json'), tooLong.body));

  const text = await g.call('GET', `/v1/jobs/${id}/logs`);
  assert.match(String(text.headers['content-type']), /^text\/plain/);
  errors.push(...check(res('/v1/jobs/{id}/logs', 'get', 200, 'text/plain'), text.text));

  const { events } = await readSse(`${g.url}/v1/jobs/${id}/logs`, ADMIN_TOKEN);
  assert.deepEqual(
    events.map((e) => e.event),
    ['status', 'log', 'log', 'end'],
  );
  for (const e of events) {
    errors.push(...check(res('/v1/jobs/{id}/logs', 'get', 200, 'text/event-stream'), e));
    const evSchema = doc.components.schemas[`${e.event[0]!.toUpperCase()}${e.event.slice(1)}Event`];
    errors.push(...check(evSchema.properties.data.contentSchema.$ref.slice(1), JSON.parse(e.data)));
  }
  assert.deepEqual(errors, []);
});
