import assert from 'node:assert/strict';
import os from 'node:os';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { resolveRunSettings } from '../../src/jobs/run-settings.js';
import type { JobSpec } from '../../src/model/job.js';
import { runSettings } from '../../src/store/store.js';
import { jobRecord } from '../helpers/records.js';

// A job's run settings are resolved once, at submit, from its spec and the
// configuration: what the spec says wins, the operator's defaults fill the
// rest, and the result is a plain value that depends on nothing else.

const config = loadConfig({
  GANTRY_DATA_DIR: os.tmpdir(),
  GANTRY_DEFAULT_TIMEOUT_SECONDS: '600',
  GANTRY_DEFAULT_MEMORY_MIB: '512',
  GANTRY_DEFAULT_USER: '4242:4242',
  GANTRY_PULL_POLICY: 'always',
  GANTRY_STOP_GRACE_SECONDS: '3',
});
const bare: JobSpec = { image: 'local/busybox:latest', command: ['true'] };

test('a spec that leaves everything open gets the configured defaults', () => {
  assert.deepEqual(resolveRunSettings(bare, config), {
    timeoutSeconds: 600,
    memoryMiB: 512,
    user: '4242:4242',
    pullPolicy: 'always',
    stopGraceSeconds: 3,
  });
});

test('what the spec says wins over every default', () => {
  const spec: JobSpec = {
    ...bare,
    timeoutSeconds: 30,
    resources: { memoryMiB: 64 },
    user: '1000:1000',
    pullPolicy: 'never',
    stopGraceSeconds: 0,
  };
  assert.deepEqual(resolveRunSettings(spec, config), {
    timeoutSeconds: 30,
    memoryMiB: 64,
    user: '1000:1000',
    pullPolicy: 'never',
    stopGraceSeconds: 0,
  });
});

test('the defaults are those of the configuration given: another configuration, other settings; the spec is left as it was', () => {
  const before = structuredClone(bare);
  const other = loadConfig({ GANTRY_DATA_DIR: os.tmpdir(), GANTRY_DEFAULT_TIMEOUT_SECONDS: '5' });
  assert.equal(resolveRunSettings(bare, other).timeoutSeconds, 5);
  assert.equal(resolveRunSettings(bare, config).timeoutSeconds, 600);
  assert.deepEqual(resolveRunSettings(bare, config), resolveRunSettings(bare, config));
  assert.deepEqual(bare, before);
});

test('a job that may still run has its settings; only one that ended before they were stored lacks them', () => {
  const record = jobRecord(1, { settings: resolveRunSettings(bare, config) });
  assert.equal(runSettings(record), record.settings);
  assert.throws(() => runSettings(jobRecord(2, { settings: null })), /job j2 has no run settings/);
});
