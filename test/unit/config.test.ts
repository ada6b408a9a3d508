import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadRegistryAuth } from '../../src/auth/registry-auth.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { parseStaticGpus } from '../../src/gpu/inventory.js';

test('defaults match the documented ones', () => {
  const c = loadConfig({});
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.port, 8420);
  assert.equal(c.dataDir, path.resolve('./data'));
  assert.equal(c.dockerSocket, '/var/run/docker.sock');
  assert.deepEqual(c.policy.networks, ['none']);
  assert.deepEqual(c.policy.imageAllowlist, ['local/*']);
  assert.deepEqual(c.policy.mountAllowlist, []);
});

test('lists are comma-separated and trimmed', () => {
  const c = loadConfig({ GANTRY_IMAGE_ALLOWLIST: ' local/* , registry.example.com/ml/* ', GANTRY_NETWORKS: 'none,jobs' });
  assert.deepEqual(c.policy.imageAllowlist, ['local/*', 'registry.example.com/ml/*']);
  assert.deepEqual(c.policy.networks, ['none', 'jobs']);
});

test('every bad value gets its own line naming the variable', () => {
  try {
    loadConfig({ GANTRY_PORT: 'eighty', GANTRY_PULL_POLICY: 'sometimes', GANTRY_ADMIN_TOKEN: 'short', GANTRY_KEEP_CONTAINERS: 'maybe' });
    assert.fail('expected a ConfigError');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    const vars = err.problems.map((p) => p.split(':')[0]).sort();
    assert.deepEqual(vars, ['GANTRY_ADMIN_TOKEN', 'GANTRY_KEEP_CONTAINERS', 'GANTRY_PORT', 'GANTRY_PULL_POLICY']);
  }
});

test('cross-field checks are reported too', () => {
  assert.throws(
    () => loadConfig({ GANTRY_DEFAULT_MEMORY_MIB: '4096', GANTRY_MAX_MEMORY_MIB: '1024' }),
    (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.startsWith('GANTRY_DEFAULT_MEMORY_MIB')),
  );
});

test('an empty variable counts as unset', () => {
  assert.equal(loadConfig({ GANTRY_PORT: '' }).port, 8420);
});

test('a ConfigError is one line per problem, each starting with the variable', () => {
  const one = new ConfigError('GANTRY_GPUS', '"x" is not UUID:MEMORY_MIB');
  assert.deepEqual(one.problems, ['GANTRY_GPUS: "x" is not UUID:MEMORY_MIB']);
  assert.equal(one.message, 'invalid configuration: GANTRY_GPUS: "x" is not UUID:MEMORY_MIB');
  const quoted = new ConfigError('GANTRY_MOUNT_ALLOWLIST', '"a\nb" is neither an absolute path nor a volume name');
  assert.deepEqual(quoted.problems, ['GANTRY_MOUNT_ALLOWLIST: "a b" is neither an absolute path nor a volume name']);
  const two = new ConfigError(['GANTRY_PORT: bad', 'GANTRY_HOST: bad']);
  assert.equal(two.message, 'invalid configuration: GANTRY_PORT: bad; GANTRY_HOST: bad');
});

test('a bad static GPU list is a ConfigError naming GANTRY_GPUS', () => {
  for (const spec of ['GPU-a:lots', 'GPU-a:1,GPU-a:2']) {
    assert.throws(
      () => parseStaticGpus(spec),
      (e: unknown) => e instanceof ConfigError && e.problems.length === 1 && e.problems[0]!.startsWith('GANTRY_GPUS: '),
      spec,
    );
  }
});

test('a bad registry auth file is a ConfigError that names the variable and never repeats its content', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'regauth-'));
  const write = (name: string, text: string) => {
    fs.writeFileSync(path.join(dir, name), text);
    return path.join(dir, name);
  };
  const cases: [string, RegExp][] = [
    [path.join(dir, 'missing.json'), /cannot read .*missing\.json: ENOENT/],
    [write('broken.json', '{"r.example:5000": {"username": "u", "password": "hunter2-secret'), /broken\.json is not JSON$/],
    [write('short.json', JSON.stringify({ 'r.example:5000': { username: 'u' } })), /\[r\.example:5000\.password\]/],
    [write('extra.json', JSON.stringify({ 'r.example:5000': { username: 'u', password: 'hunter2-secret', token: 'x' } })), /token/],
  ];
  for (const [file, why] of cases) {
    assert.throws(
      () => loadRegistryAuth(file),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.equal(e.problems.length, 1);
        assert.match(e.problems[0]!, /^GANTRY_REGISTRY_AUTH_FILE: /);
        assert.match(e.problems[0]!, why);
        assert.doesNotMatch(e.message, /hunter2/);
        return true;
      },
      file,
    );
  }
  assert.deepEqual(loadRegistryAuth(undefined), {});
  const good = write('good.json', JSON.stringify({ 'r.example:5000': { username: 'u', password: 'p' } }));
  assert.deepEqual(loadRegistryAuth(good), { 'r.example:5000': { username: 'u', password: 'p' } });
});

test('GPU model weights keep their order; a weight that is not a number of at least 0 names GANTRY_GPU_MODEL_WEIGHTS', () => {
  const config = loadConfig({ GANTRY_GPU_MODEL_WEIGHTS: 'H200=2, A100=1.5,NVIDIA=0', GANTRY_DCGM_JOB_MAPPING_DIR: 'maps' });
  assert.deepEqual(config.gpus.modelWeights, [
    { model: 'H200', weight: 2 },
    { model: 'A100', weight: 1.5 },
    { model: 'NVIDIA', weight: 0 },
  ]);
  assert.equal(config.gpus.dcgmJobMappingDir, path.resolve('maps'));
  assert.equal(loadConfig({}).gpus.dcgmJobMappingDir, null);
  for (const bad of ['H200=two', 'H200=-1', 'H200', 'H200=']) {
    assert.throws(
      () => loadConfig({ GANTRY_GPU_MODEL_WEIGHTS: bad }),
      (e: unknown) => e instanceof ConfigError && e.problems.length === 1 && e.problems[0]!.startsWith('GANTRY_GPU_MODEL_WEIGHTS: '),
      bad,
    );
  }
});
