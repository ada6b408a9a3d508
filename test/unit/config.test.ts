import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../src/config.js';

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
