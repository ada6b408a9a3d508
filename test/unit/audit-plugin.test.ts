// The audit plugin on a bare fastify instance (src/api/plugins/audit.ts): a
// state-changing /v1 route that names no audit action cannot be added, and
// a refusal's record keeps a bounded list of field paths and nothing else of
// the answer. The records go to an in-memory AuditStore.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import Fastify from 'fastify';
import { auditTrail } from '../../src/api/plugins/audit.js';
import { auth } from '../../src/api/plugins/auth.js';
import { HttpProblem, sendProblem } from '../../src/api/problems.js';
import { hashToken, TokenStore } from '../../src/auth/tokens.js';
import type { GantryMetrics } from '../../src/metrics/registry.js';
import type { NewAuditRecord } from '../../src/model/audit.js';
import type { AuditStore } from '../../src/store/store.js';

const TOKEN = 'plugin-test-token-0123456789abcdef';

async function app() {
  const appended: NewAuditRecord[] = [];
  const audit: AuditStore = {
    append: async (r) => void appended.push(r),
    list: async () => [],
    deleteOlderThan: async () => 0,
  };
  const tokens = new TokenStore([{ owner: 'ops', scopes: ['submit'], sha256: hashToken(TOKEN) }]);
  const metrics = { auditWriteFailed() {} } as unknown as GantryMetrics;
  const fastify = Fastify();
  await fastify.register(auth, { tokens });
  await fastify.register(auditTrail, { audit, metrics, tokens, node: 'n1' });
  return { fastify, appended };
}

test('a state-changing /v1 route that names no audit action cannot be added; reads and other paths need none', async () => {
  const { fastify } = await app();
  for (const method of ['POST', 'PUT', 'PATCH', 'DELETE'] as const) {
    assert.throws(
      () => fastify.route({ method, url: '/v1/things/:id', handler: async () => ({}) }),
      /changes state but names no audit action/,
    );
  }
  fastify.get('/v1/things', async () => ({}));
  fastify.post('/internal/ping', async () => ({}));
  fastify.post('/v1/things', { config: { audit: { action: 'job.submit' } } }, async () => ({}));
  await fastify.ready();
  await fastify.close();
});

test('a refusal keeps the problem type and at most 20 field paths of 200 characters, never the messages', async () => {
  const { fastify, appended } = await app();
  const errors = Array.from({ length: 30 }, (_, i) => ({
    field: `body.env.K${i}${'x'.repeat(300)}`,
    message: `value secret-${i} refused`,
  }));
  fastify.post('/v1/things/:id', { onRequest: fastify.auth('submit'), config: { audit: { action: 'job.cancel' } } }, async (_req, reply) =>
    sendProblem(reply, new HttpProblem(422, 'validation', 'Request is invalid', 'refused', errors)),
  );
  const res = await fastify.inject({ method: 'POST', url: '/v1/things/t-1', headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.statusCode, 422);
  assert.equal(appended.length, 1);
  const [r] = appended;
  assert.equal(r!.actor, 'ops');
  assert.equal(r!.target, 't-1');
  assert.equal(r!.problemType, 'https://gantry.dev/problems/validation');
  assert.equal(r!.detail.fields?.length, 20);
  assert.ok(r!.detail.fields!.every((f, i) => f.length === 200 && f.startsWith(`body.env.K${i}x`)));
  assert.ok(!JSON.stringify(r).includes('secret-'));
  await fastify.close();
});
