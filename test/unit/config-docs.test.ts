import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { configTable, README_PATH, withConfigTable } from '../../scripts/config-table.js';
import { EnvSchema } from '../../src/config.js';

test('every variable is described once, on one line, in the schema', () => {
  for (const [name, schema] of Object.entries(EnvSchema.shape)) {
    assert.ok(schema.description, `${name} has no .describe()`);
    assert.doesNotMatch(schema.description, /\n/, `${name}: a description is one table cell`);
  }
});

test('the README configuration table is the one the schema gives', () => {
  const readme = fs.readFileSync(README_PATH, 'utf8');
  assert.equal(readme, withConfigTable(readme), 'README.md is out of date: run `npm run docs:config` and commit it');
});

test('the table has one row per variable, with the schema default', () => {
  const rows = configTable().split('\n').slice(2);
  assert.deepEqual(
    rows.map((r) => /^\| `(GANTRY_\w+)` \|/.exec(r)?.[1]),
    Object.keys(EnvSchema.shape),
  );
  const row = (name: string) => rows.find((r) => r.startsWith(`| \`${name}\` |`))!.split(' | ')[1];
  assert.equal(row('GANTRY_PORT'), '`8420`');
  assert.equal(row('GANTRY_IMAGE_ALLOWLIST'), '`local/*`');
  assert.equal(row('GANTRY_ALLOWED_PULL_POLICIES'), '`missing,always,never`');
  assert.equal(row('GANTRY_MOUNT_ALLOWLIST'), '(none)');
  assert.equal(row('GANTRY_GPU_DRIVER_ENV'), '(none)');
  assert.equal(row('GANTRY_KEEP_CONTAINERS'), '`false`');
  assert.equal(row('GANTRY_TOKENS_FILE'), '–');
});
