import assert from 'node:assert/strict';
import { test } from 'node:test';
import { client, startGantry, tokensFile } from '../helpers/gantry.js';

test("GET /v1/me names the token's owner and scopes; an admin token holds every scope; no token is a 401", async (t) => {
  const file = tokensFile([
    { owner: 'airflow', scopes: ['submit', 'read'], token: 'airflow-token-0123456789abcdef' },
    { owner: 'ops', scopes: ['admin'], token: 'ops-token-0123456789abcdefgh' },
    { owner: 'prom', scopes: ['metrics'], token: 'prom-token-0123456789abcdefg' },
  ]);
  const g = await startGantry(t, { GANTRY_TOKENS_FILE: file });
  const me = async (token: string | null) =>
    client(g.url, token).call<{ owner: string; scopes: string[]; admin: boolean }>('GET', '/v1/me');
  assert.deepEqual((await me('airflow-token-0123456789abcdef')).body, { owner: 'airflow', scopes: ['submit', 'read'], admin: false });
  assert.deepEqual((await me('ops-token-0123456789abcdefgh')).body, {
    owner: 'ops',
    scopes: ['submit', 'read', 'cancel', 'admin', 'metrics'],
    admin: true,
  });
  assert.deepEqual(
    (await me('prom-token-0123456789abcdefg')).body,
    { owner: 'prom', scopes: ['metrics'], admin: false },
    'any valid token may ask',
  );
  const none = await me(null);
  assert.equal(none.status, 401);
  assert.match(String(none.headers['content-type']), /^application\/problem\+json/);
});
