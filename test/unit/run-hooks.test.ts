import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import type { Config } from '../../src/config.js';
import { toJob } from '../../src/jobs/view.js';
import type { JobSpec } from '../../src/model/job.js';
import { JobFailure } from '../../src/runner/hooks/hook.js';
import { RunHooks } from '../../src/runner/hooks/run-hooks.js';
import { NOTICE_ENV, NOTICE_FILE, NOTICE_MOUNT } from '../../src/runner/preempt-notice.js';
import { DirectorySecretSource } from '../../src/secrets/directory-source.js';
import { jobRecord } from '../helpers/records.js';

const log = pino({ level: 'silent' });
const TOKEN = 'hf_9aXq3LmT0pZr7Wc';
const preempted = { cause: 'preempted' as const, reason: 'preempted for job j9' };

/** A run's hooks over real folders: the secrets, the run dir of secret files, the notice dir. */
async function setup(spec: Partial<JobSpec>) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'run-hooks-'));
  const secretsDir = path.join(root, 'secrets');
  fs.mkdirSync(secretsDir);
  fs.writeFileSync(path.join(secretsDir, 'hf'), `${TOKEN}\n`, { mode: 0o600 });
  fs.writeFileSync(path.join(secretsDir, '.owners.json'), JSON.stringify({ hf: ['o'] }));
  const config = { secrets: { runDir: path.join(root, 'run') }, noticeDir: path.join(root, 'notices') } as Config;
  const record = jobRecord(1, { node: 'n1', attempt: 2, spec: { image: 'local/busybox', command: ['true'], ...spec } as JobSpec });
  const source = await DirectorySecretSource.open(secretsDir);
  const hooks = RunHooks.of(record, 'n1', { config, secrets: source, log });
  return {
    hooks,
    /** The same run's hooks as a restarted Gantry makes them to adopt its container. */
    again: () => RunHooks.of(record, 'n1', { config, secrets: source, log }),
    rotate: (value: string) => fs.writeFileSync(path.join(secretsDir, 'hf'), value),
    heldDir: path.join(root, 'run', '.held', 'n1'),
    secretFile: path.join(root, 'run', 'n1', 'j1-2', '0'),
    noticeFile: path.join(root, 'notices', 'n1', 'j1-2', 'preempt.json'),
  };
}

const stopNotice = { signalAt: '2026-01-01T00:00:00.000Z', killAt: '2026-01-01T00:00:30.000Z' };

test('a preemptible run with secrets: the container gets the secret and notice mounts and env, in hook order', async () => {
  const { hooks, secretFile } = await setup({ preemptible: true, secrets: [{ name: 'hf', file: '/run/secrets/hf', env: 'HF_TOKEN' }] });
  const added = await hooks.prestart();
  assert.deepEqual(
    added.mounts.map((m) => m.target),
    ['/run/secrets/hf', NOTICE_MOUNT],
  );
  assert.ok(added.mounts.every((m) => m.readOnly));
  assert.deepEqual(added.env, { HF_TOKEN: TOKEN, [NOTICE_ENV]: NOTICE_FILE });
  assert.equal(fs.readFileSync(secretFile, 'utf8'), `${TOKEN}\n`, 'the file exists for the engine to mount at create');
});

test('secret files rest on the host only from before the start to the start, and again for a start retried', async () => {
  const { hooks, secretFile } = await setup({ secrets: [{ name: 'hf', file: '/run/secrets/hf' }] });
  await hooks.prestart();
  await hooks.starting();
  assert.ok(fs.existsSync(secretFile));
  await hooks.poststart();
  assert.equal(fs.existsSync(secretFile), false, 'the started container keeps its mount; the file goes');
  await hooks.starting();
  assert.ok(fs.existsSync(secretFile), 'a created container is started only with its files back');
  await hooks.cleanup();
  assert.equal(fs.existsSync(secretFile), false);
  await hooks.cleanup();
});

test("the run's output has its secrets taken out; a run without secrets changes no line", async () => {
  const { hooks } = await setup({ secrets: [{ name: 'hf', env: 'HF_TOKEN' }] });
  const filter = (await hooks.output())?.();
  assert.equal(`${filter?.push(`token=${TOKEN}\n`)}${filter?.end()}`, 'token=[secret:hf]\n');
  const plain = await setup({});
  assert.equal(await plain.hooks.output(), undefined);
});

test('after a restart the attempt keeps the values it started with: a value rotated meanwhile does not stop the old one being redacted', async () => {
  const { hooks, again, rotate, heldDir, secretFile } = await setup({
    secrets: [{ name: 'hf', env: 'HF_TOKEN', file: '/run/secrets/hf' }],
  });
  await hooks.prestart();
  await hooks.poststart();
  assert.equal(fs.statSync(path.join(heldDir, 'j1-2')).mode & 0o777, 0o600, 'held for the attempt, Gantry-only');
  rotate('hf_ROTATED_value_0000\n');
  const adopted = again();
  const filter = (await adopted.output())?.();
  assert.equal(`${filter?.push(`old=${TOKEN}\n`)}${filter?.end()}`, 'old=[secret:hf]\n', 'the value the container was given is redacted');
  await adopted.starting();
  assert.equal(fs.readFileSync(secretFile, 'utf8'), `${TOKEN}\n`, 'a container created before the restart starts with the same value');
  await adopted.ended();
  assert.deepEqual(fs.readdirSync(heldDir), [], 'gone with the attempt');
  const next = (await again().output())?.();
  assert.equal(`${next?.push('hf_ROTATED_value_0000\n')}${next?.end()}`, '[secret:hf]\n', 'a later run reads the source again');
});

test("the values of the spec's private variables are taken out of the output like secrets, with or without secrets", async () => {
  const value = 'pk-4f1c9e2b7a';
  const { hooks } = await setup({ privateEnv: { API_KEY: value }, secrets: [{ name: 'hf', env: 'HF_TOKEN' }] });
  const redact = async (h: RunHooks, text: string) => {
    const filter = (await h.output())?.();
    return filter ? filter.push(text) + filter.end() : text;
  };
  assert.equal(await redact(hooks, `key=${value} token=${TOKEN}`), 'key=[secret:privateEnv.API_KEY] token=[secret:hf]');
  assert.equal(await redact(hooks, Buffer.from(value).toString('base64')), '[secret:privateEnv.API_KEY]');
  const alone = await setup({ privateEnv: { API_KEY: value } });
  assert.equal(await redact(alone.hooks, value), '[secret:privateEnv.API_KEY]');
});

test("the API's view of a job never shows a private value, only its name", () => {
  const record = jobRecord(1, {
    spec: { image: 'local/busybox', command: ['true'], env: { A: '1' }, privateEnv: { API_KEY: 'pk-4f1c9e2b7a' } },
  });
  const view = toJob(record);
  assert.deepEqual(view.spec.privateEnv, { API_KEY: '[private]' });
  assert.deepEqual(view.spec.env, { A: '1' });
  assert.ok(!JSON.stringify(view).includes('pk-4f1c9e2b7a'));
  assert.equal(record.spec.privateEnv?.API_KEY, 'pk-4f1c9e2b7a', 'the stored spec keeps the value for the run');
});

test('a secret that cannot be had fails the job before its container is created', async () => {
  const { hooks } = await setup({ secrets: [{ name: 'missing', env: 'X' }] });
  await assert.rejects(hooks.prestart(), JobFailure);
});

test('a preemption is written to the notice before SIGTERM, read back by a run that adopts the container, and removed at the end', async () => {
  const { hooks, noticeFile } = await setup({ preemptible: true });
  await hooks.prestart();
  assert.equal(await hooks.adopted(), null, 'no notice: nothing was under way');
  await hooks.stop({ why: { cause: 'gpu_error', reason: 'Xid 79' }, ...stopNotice, hasContainer: true });
  await hooks.stop({ why: preempted, ...stopNotice, hasContainer: false });
  assert.equal(fs.existsSync(noticeFile), false, 'only a preemption of a run with a container is noticed');
  await hooks.stop({ why: preempted, ...stopNotice, hasContainer: true });
  assert.deepEqual(JSON.parse(fs.readFileSync(noticeFile, 'utf8')), { reason: preempted.reason, ...stopNotice, attempt: 2 });
  assert.deepEqual(await hooks.adopted(), preempted);
  await hooks.cleanup();
  assert.ok(fs.existsSync(noticeFile), 'the notice outlives the run being over until its end is recorded');
  await hooks.ended();
  assert.equal(fs.existsSync(path.dirname(noticeFile)), false);
});

test('a run that is not preemptible has no notice', async () => {
  const { hooks, noticeFile } = await setup({});
  assert.deepEqual(await hooks.prestart(), { mounts: [], env: {} });
  await hooks.stop({ why: preempted, ...stopNotice, hasContainer: true });
  assert.equal(fs.existsSync(noticeFile), false);
  assert.equal(await hooks.adopted(), null);
});
