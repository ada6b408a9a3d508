import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { SecretRedactor } from '../../src/logs/secret-redactor.js';
import { prepareSecretFiles, readSecrets, SecretFiles } from '../../src/runner/secret-delivery.js';
import { DirectorySecretSource } from '../../src/secrets/directory-source.js';
import { openSecretSource } from '../../src/secrets/open.js';
import { NO_SECRETS, SecretUnavailableError } from '../../src/secrets/source.js';

function secretsDir(files: Record<string, string>, owners?: unknown): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'secrets-'));
  for (const [name, value] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), value, { mode: 0o600 });
  if (owners !== undefined) fs.writeFileSync(path.join(dir, '.owners.json'), typeof owners === 'string' ? owners : JSON.stringify(owners));
  return dir;
}

test('the redactor replaces a value, its lines, and its base64 forms with the secret name', () => {
  const token = 'hf_9aXq3LmT0pZr7Wc';
  const pem = '-----BEGIN KEY-----\nMIIBVwIBADANBgkqhkiG9w0BAQEFAASCAUEwggE9\n-----END KEY-----\n';
  const r = SecretRedactor.of([
    { name: 'hf', value: Buffer.from(`${token}\n`) },
    { name: 'key', value: Buffer.from(pem) },
  ])!;
  /** One line through a fresh stream filter, as a capture gives it. */
  const redact = (line: string) => {
    const f = r.stream();
    return f.push(line) + f.end();
  };
  assert.equal(redact(`token=${token} again ${token}`), 'token=[secret:hf] again [secret:hf]');
  assert.equal(redact(Buffer.from(token).toString('base64')), '[secret:hf]');
  assert.equal(redact(Buffer.from(`${token}\n`).toString('base64')), '[secret:hf]', 'echo $X | base64 includes the newline');
  assert.equal(redact(`x ${Buffer.from(token).toString('base64url').replace(/=+$/, '')} y`), 'x [secret:hf] y');
  assert.equal(redact('MIIBVwIBADANBgkqhkiG9w0BAQEFAASCAUEwggE9'), '[secret:key]', 'a line of a multi-line secret alone');
  assert.equal(redact('-----END KEY-----'), '[secret:key]');
  assert.equal(redact('nothing to see'), 'nothing to see');
  assert.equal(SecretRedactor.of([]), null);
});

test('a directory source allows each secret to the owners .owners.json lists, and no one else', async () => {
  const dir = secretsDir({ 'hf-token': 'hf_value_1234\n', 'shared.key': 'shared-value' }, { 'hf-token': ['alice'], 'shared.key': ['*'] });
  fs.mkdirSync(path.join(dir, 'sub'));
  fs.symlinkSync('/etc/passwd', path.join(dir, 'escape'));
  const src = await DirectorySecretSource.open(dir);
  assert.equal(await src.mayUse('alice', 'hf-token'), true);
  assert.equal(await src.mayUse('bob', 'hf-token'), false);
  assert.equal(await src.mayUse('bob', 'shared.key'), true);
  assert.equal(await src.mayUse('alice', 'missing'), false);
  assert.equal((await src.read('alice', 'hf-token')).toString(), 'hf_value_1234\n');
  await assert.rejects(src.read('bob', 'hf-token'), SecretUnavailableError);
  // A link out of the directory and a folder are never secrets, even when listed.
  fs.writeFileSync(path.join(dir, '.owners.json'), JSON.stringify({ escape: ['*'], sub: ['*'] }));
  assert.equal(await src.mayUse('alice', 'escape'), false);
  await assert.rejects(src.read('alice', 'escape'), /no such file/);
  assert.equal(await src.mayUse('alice', 'sub'), false);
  // Edits apply without a restart; an owners file that no longer parses allows nothing.
  fs.writeFileSync(path.join(dir, '.owners.json'), '{not json');
  assert.equal(await src.mayUse('bob', 'shared.key'), false);
  await assert.rejects(src.read('bob', 'shared.key'), (err: SecretUnavailableError) => {
    assert.equal(err.message, 'secret "shared.key" is not available: .owners.json cannot be read now (the operator\'s log says why)');
    assert.match(err.detail ?? '', /not JSON/, 'the operator is told why');
    return true;
  });
  // What a broken file would quote (other secrets' names, fragments) never reaches an owner's job reason.
  fs.writeFileSync(path.join(dir, '.owners.json'), '{"other-teams-secret": ["carol"], oops}');
  await assert.rejects(
    src.read('bob', 'shared.key'),
    (err: Error) => !err.message.includes('other-teams-secret') && !err.message.includes('oops'),
  );
});

test('GANTRY_SECRETS_DIR is checked at start: missing, or an owners file that does not parse, stops it', async () => {
  await assert.rejects(openSecretSource('/nonexistent/secrets'), /GANTRY_SECRETS_DIR: "\/nonexistent\/secrets" does not exist/);
  await assert.rejects(openSecretSource(secretsDir({}, { 'bad name!': ['x'] })), /GANTRY_SECRETS_DIR: \.owners\.json: bad name!/);
  await assert.rejects(openSecretSource(secretsDir({}, '[1')), /not JSON/);
  assert.equal(await openSecretSource(null), NO_SECRETS);
  assert.equal(await NO_SECRETS.mayUse('alice', 'x'), false);
});

test('a run reads its secrets: env values lose one trailing newline, values too short to redact are refused', async () => {
  const dir = secretsDir({ a: 'value-a\n', b: 'value-b', short: 'ab\n' }, { a: ['o'], b: ['o'], short: ['o'] });
  const src = await DirectorySecretSource.open(dir);
  const run = await readSecrets(src, 'o', [
    { name: 'a', env: 'A' },
    { name: 'b', file: '/run/secrets/b' },
  ]);
  assert.deepEqual(run.env, { A: 'value-a' });
  assert.equal(run.values[1]!.value.toString(), 'value-b');
  await assert.rejects(readSecrets(src, 'o', [{ name: 'short', env: 'S' }]), /too short to redact/);
});

test('secret files live in a 0700 folder per attempt, read-only, until removed', async () => {
  const runDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'run-')), 'secrets');
  const files = new SecretFiles(runDir, 'node-a', 'job1', 2, [
    { name: 'a', env: 'A' },
    { name: 'b', file: '/run/secrets/b' },
  ]);
  const mounts = files.mounts();
  assert.deepEqual(mounts, [
    { type: 'bind', source: path.join(runDir, 'node-a', 'job1-2', '1'), target: '/run/secrets/b', readOnly: true },
  ]);
  const secrets = {
    values: [
      { name: 'a', value: Buffer.from('aaaa') },
      { name: 'b', value: Buffer.from('bbbb\n') },
    ],
    env: { A: 'aaaa' },
  };
  await files.write(secrets);
  await files.write(secrets);
  assert.equal(fs.readFileSync(mounts[0]!.source, 'utf8'), 'bbbb\n', 'a file secret keeps its exact bytes');
  assert.equal(fs.statSync(mounts[0]!.source).mode & 0o777, 0o444);
  assert.equal(fs.statSync(path.dirname(mounts[0]!.source)).mode & 0o777, 0o700);
  assert.equal(fs.statSync(path.join(runDir, 'node-a')).mode & 0o777, 0o700);
  await files.remove();
  assert.equal(fs.existsSync(path.dirname(mounts[0]!.source)), false);
  await files.write(secrets);
  await prepareSecretFiles(runDir, 'node-b');
  assert.ok(fs.existsSync(mounts[0]!.source), "another node's files are left alone");
  await prepareSecretFiles(runDir, 'node-a');
  assert.deepEqual(fs.readdirSync(path.join(runDir, 'node-a')), [], 'a restarted node clears what it left');
});
