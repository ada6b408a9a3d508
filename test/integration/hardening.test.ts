import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { ADMIN_TOKEN, client, spawnGantry, startGantry, TEST_IMAGE, tempDir, tokensFile } from '../helpers/gantry.js';
import { readSse } from '../helpers/sse.js';

const sh = (script: string, extra: Record<string, unknown> = {}) => ({ image: TEST_IMAGE, command: ['sh', '-c', script], ...extra });

/** A host folder every uid may write to, as an operator would share one with jobs. */
function sharedFolder(): string {
  const dir = tempDir('gantry-shared-');
  fs.chmodSync(dir, 0o777);
  return dir;
}

const PLANT = 'cp /bin/busybox /w/sh && chmod 4755 /w/sh; touch /w/made; chown 0:0 /w/made 2>/dev/null || echo chown-refused; id -u; id -g';

test('a job runs as GANTRY_DEFAULT_USER and cannot plant a root-owned or setuid-root file in a writable mount', async (t) => {
  const w = sharedFolder();
  const root = sharedFolder();
  const g = await startGantry(t, {
    GANTRY_MOUNT_ALLOWLIST: `${w},${root}`,
    GANTRY_TOKENS_FILE: tokensFile([
      { owner: 'alice', scopes: ['submit', 'read'], token: 'alice-token-0123456789' },
      { owner: 'ops', scopes: ['submit', 'read'], token: 'ops-token-0123456789ab' },
    ]),
    GANTRY_ALLOW_ROOT_OWNERS: 'ops',
  });
  const alice = client(g.url, 'alice-token-0123456789');
  const job = await alice.waitFor((await alice.submit(sh(PLANT, { mounts: [{ source: w, target: '/w', readOnly: false }] }))).id);
  assert.equal(job.state, 'succeeded', job.reason ?? '');
  const out = (await alice.call('GET', `/v1/jobs/${job.id}/logs`)).text;
  assert.equal(out, 'chown-refused\n65532\n65532\n');
  for (const f of ['sh', 'made']) {
    const st = fs.statSync(path.join(w, f));
    assert.equal(st.uid, 65532, `${f} belongs to the job's uid`);
    assert.equal(st.gid, 65532, `${f} belongs to the job's gid`);
  }

  // The same script as root, allowed for "ops" only: what the default prevents.
  const refused = await alice.call('POST', '/v1/jobs', {
    body: sh(PLANT, { user: '0:0', mounts: [{ source: w, target: '/w', readOnly: false }] }),
  });
  assert.equal(refused.status, 422);
  assert.deepEqual(
    (refused.body as { errors: { field: string }[] }).errors.map((e) => e.field),
    ['body.user'],
  );
  assert.equal((await alice.call('POST', '/v1/jobs', { body: sh('true', { user: 'root' }) })).status, 422);
  const ops = client(g.url, 'ops-token-0123456789ab');
  const asRoot = await ops.waitFor(
    (await ops.submit(sh(PLANT, { user: '0:0', mounts: [{ source: root, target: '/w', readOnly: false }] }))).id,
  );
  assert.equal(asRoot.state, 'succeeded', asRoot.reason ?? '');
  const planted = fs.statSync(path.join(root, 'sh'));
  assert.equal(planted.uid, 0);
  assert.equal(planted.mode & 0o4000, 0o4000, 'as root, the job leaves a setuid-root file: the reason root is opt-in');
});

test('GANTRY_READONLY_ROOTFS: the root filesystem refuses writes, /tmp takes them', async (t) => {
  const g = await startGantry(t, { GANTRY_READONLY_ROOTFS: 'true' });
  const job = await g.waitFor((await g.submit(sh('touch /tmp/x && echo tmp-ok; touch /x 2>/dev/null || echo root-refused'))).id);
  assert.equal(job.state, 'succeeded', job.reason ?? '');
  assert.equal((await g.call('GET', `/v1/jobs/${job.id}/logs`)).text, 'tmp-ok\nroot-refused\n');
});

test('secrets: delivered as env and file, never stored or shown, redacted from stored and streamed logs, per owner', async (t) => {
  const value = 'hf_live_Zq8rT2mW9xK4pL7vB3nC';
  const secrets = tempDir('gantry-secrets-');
  fs.writeFileSync(path.join(secrets, 'hf-token'), `${value}\n`, { mode: 0o600 });
  fs.writeFileSync(path.join(secrets, 'bob-only'), 'bob-secret-value', { mode: 0o600 });
  fs.writeFileSync(path.join(secrets, '.owners.json'), JSON.stringify({ 'hf-token': ['alice'], 'bob-only': ['bob'] }));
  const runDir = path.join(tempDir('gantry-secret-run-'), 'run');
  const g = await spawnGantry(tempDir(), {
    GANTRY_SECRETS_DIR: secrets,
    GANTRY_SECRETS_RUN_DIR: runDir,
    GANTRY_LOG_LEVEL: 'debug',
    GANTRY_TOKENS_FILE: tokensFile([
      { owner: 'alice', scopes: ['submit', 'read'], token: 'alice-token-0123456789' },
      { owner: 'bob', scopes: ['submit', 'read'], token: 'bob-token-0123456789ab' },
    ]),
  });
  t.after(() => g.stop());
  const alice = client(g.url, 'alice-token-0123456789');
  const bob = client(g.url, 'bob-token-0123456789ab');

  const script = [
    'sleep 1',
    'echo "token is $HF_TOKEN"',
    'cat /run/secrets/hf',
    'printf %s "$HF_TOKEN" | base64',
    'echo "$HF_TOKEN" | base64',
    'stat -c "%a %u" /run/secrets/hf',
    '(echo x > /run/secrets/hf) 2>/dev/null || echo file-read-only',
    'echo "$HF_TOKEN"',
  ].join('; ');
  const refs = [
    { name: 'hf-token', env: 'HF_TOKEN' },
    { name: 'hf-token', file: '/run/secrets/hf' },
  ];
  const spec = sh(script, { secrets: refs });
  const submitted = await alice.call<{ id: string }>('POST', '/v1/jobs', { body: spec });
  assert.equal(submitted.status, 201, submitted.text);
  const id = submitted.body.id;
  const streamed = await readSse(`${g.url}/v1/jobs/${id}/logs`, 'alice-token-0123456789', { stop: (e) => e.event === 'end' });
  const job = await alice.waitFor(id);
  assert.equal(job.state, 'succeeded', job.reason ?? '');

  const stored = (await alice.call('GET', `/v1/jobs/${id}/logs`)).text;
  assert.equal(
    stored,
    [
      'token is [secret:hf-token]',
      '[secret:hf-token]',
      '[secret:hf-token]',
      '[secret:hf-token]',
      '444 0',
      'file-read-only',
      '[secret:hf-token]',
      '',
    ].join('\n'),
  );
  const streamedLines = streamed.events.filter((e) => e.event === 'log').map((e) => JSON.parse(e.data).line);
  assert.deepEqual(streamedLines, stored.trimEnd().split('\n'), 'followers see the redacted lines as they come');
  assert.equal(job.result, '[secret:hf-token]', 'the result (for XCom) is redacted too');

  // Plain env values are the job's to show, but never the request log's, refused or not.
  const envValue = 'env-value-9Xq2Lm';
  const withEnv = await alice.submit(sh('true', { env: { PLAIN: envValue } }));
  assert.equal((await alice.waitFor(withEnv.id)).state, 'succeeded');
  const refusedEnv = await alice.call('POST', '/v1/jobs', { body: sh('true', { env: { NVIDIA_VISIBLE_DEVICES: envValue } }) });
  assert.equal(refusedEnv.status, 422);
  // The process log reaches the test's pipe a moment after the response.
  for (let i = 0; !/"route":"\/v1\/jobs","status":422/.test(g.output()); i++) {
    assert.ok(i < 100, 'the request log has the refused submit');
    await sleep(50);
  }
  assert.ok(!g.output().includes(envValue), 'the request log never holds env values');

  const b64 = Buffer.from(value).toString('base64').replace(/=+$/, '');
  const everywhere = [
    JSON.stringify(job),
    (await alice.call('GET', `/v1/jobs?limit=10`)).text,
    JSON.stringify(streamed.events),
    stored,
    g.output(),
    ...(fs.readdirSync(g.dataDir, { recursive: true, withFileTypes: true }) as fs.Dirent[])
      .filter((e) => e.isFile())
      .map((e) => fs.readFileSync(path.join(e.parentPath, e.name)).toString('latin1')),
  ];
  for (const text of everywhere) {
    assert.ok(!text.includes(value), 'the value appears nowhere Gantry keeps or shows');
    assert.ok(!text.includes(b64), 'nor its base64');
  }
  assert.deepEqual(job.spec.secrets, refs, 'the job shows the names it was given');
  assert.deepEqual(
    (fs.readdirSync(runDir, { recursive: true, withFileTypes: true }) as fs.Dirent[]).filter((e) => !e.isDirectory()).map((e) => e.name),
    [],
    'no secret file, nor a held value, is left on the host',
  );

  // Another owner's secret, and one that does not exist, are refused alike.
  for (const name of ['hf-token', 'no-such-secret']) {
    const r = await bob.call<{ errors: { field: string; message: string }[] }>('POST', '/v1/jobs', {
      body: sh('true', { secrets: [{ name, env: 'X' }] }),
    });
    assert.equal(r.status, 422, r.text);
    assert.deepEqual(
      r.body.errors.map((e) => e.field),
      ['body.secrets.0.name'],
    );
    assert.match(r.body.errors[0]!.message, new RegExp(`owner "bob" may use no secret named "${name}"`));
  }
});

test('the data dir under an allowlisted prefix is never mounted into a job: refused at submit, the SQLite file out of reach', async (t) => {
  const srv = tempDir('gantry-srv-');
  const dataDir = path.join(srv, 'gantry');
  fs.mkdirSync(dataDir);
  const g = await startGantry(t, { GANTRY_MOUNT_ALLOWLIST: srv }, {}, dataDir);
  for (const source of [dataDir, srv]) {
    const r = await g.call<{ errors: { field: string; message: string }[] }>('POST', '/v1/jobs', {
      body: sh('cat /d/*.db', { mounts: [{ source, target: '/d', readOnly: true }] }),
    });
    assert.equal(r.status, 422, r.text);
    assert.equal(r.body.errors[0]?.field, 'body.mounts.0.source');
    assert.match(r.body.errors[0]?.message ?? '', /would expose Gantry's own GANTRY_DATA_DIR/);
  }
  const other = path.join(srv, 'models');
  fs.mkdirSync(other);
  const ok = await g.call('POST', '/v1/jobs?dryRun=true', {
    body: sh('true', { mounts: [{ source: other, target: '/m', readOnly: true }] }),
  });
  assert.equal(ok.status, 200, ok.text);
});

test('/readyz says which part is down to anyone, and why (the engine error text) only to an admin token', async (t) => {
  const runtime = new FakeRuntime();
  runtime.ping = async () => {
    throw new Error('connect ECONNREFUSED /srv/private/docker.sock');
  };
  const g = await startGantry(
    t,
    {
      GANTRY_TOKENS_FILE: tokensFile([
        { owner: 'admin', scopes: ['admin'], token: ADMIN_TOKEN },
        { owner: 'alice', scopes: ['submit', 'read'], token: 'alice-token-0123456789' },
      ]),
    },
    { runtime },
  );
  const anonymous = await g.call<{ checks: { docker: string } }>('GET', '/readyz', { token: null });
  assert.equal(anonymous.status, 503);
  assert.equal(anonymous.body.checks.docker, 'unreachable');
  const owner = await g.call<{ checks: { docker: string } }>('GET', '/readyz', { token: 'alice-token-0123456789' });
  assert.equal(owner.body.checks.docker, 'unreachable', 'a token without admin learns no more');
  const admin = await g.call<{ checks: { docker: string } }>('GET', '/readyz');
  assert.equal(admin.body.checks.docker, 'unreachable: connect ECONNREFUSED /srv/private/docker.sock');
});

test('a secret rotated while Gantry was down is still redacted when the adopted job prints the value it started with', async (t) => {
  const secrets = tempDir('gantry-secrets-');
  const started = 'hf_started_with_value_4242';
  fs.writeFileSync(path.join(secrets, 'hf-token'), started, { mode: 0o600 });
  fs.writeFileSync(path.join(secrets, '.owners.json'), JSON.stringify({ 'hf-token': ['*'] }));
  const gate = sharedFolder();
  const dataDir = tempDir();
  const env = {
    GANTRY_SECRETS_DIR: secrets,
    GANTRY_SECRETS_RUN_DIR: path.join(tempDir('gantry-secret-run-'), 'run'),
    GANTRY_MOUNT_ALLOWLIST: gate,
  };
  let g = await spawnGantry(dataDir, env);
  t.after(() => g.stop());
  const job = await g.submit(
    sh('while [ ! -e /gate/open ]; do sleep 0.1; done; echo "token is $HF_TOKEN"', {
      secrets: [{ name: 'hf-token', env: 'HF_TOKEN' }],
      mounts: [{ source: gate, target: '/gate', readOnly: true }],
    }),
  );
  await g.waitFor(job.id, (j) => j.state === 'running');
  await g.stop('SIGKILL');
  fs.writeFileSync(path.join(secrets, 'hf-token'), 'hf_rotated_value_9999', { mode: 0o600 });
  g = await spawnGantry(dataDir, env);
  fs.writeFileSync(path.join(gate, 'open'), '');
  assert.equal((await g.waitFor(job.id)).state, 'succeeded');
  const stored = (await g.call('GET', `/v1/jobs/${job.id}/logs`)).text;
  assert.equal(stored, 'token is [secret:hf-token]\n');
});
