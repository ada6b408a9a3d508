import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { type Config, ConfigError, loadConfig } from '../../src/config.js';
import { NODE_ID_FILE, settleNodeName } from '../../src/fleet/node-identity.js';

const scratch = () => fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-node-id-'));

/** The config of a start on `dataDir` whose hostname is `hostname` (what loadConfig puts there when GANTRY_NODE_NAME is unset). */
function started(dataDir: string, hostname: string, env: Record<string, string> = {}): Config {
  const config = loadConfig({ GANTRY_DATA_DIR: dataDir, ...env });
  return config.node.nameFromEnv ? config : { ...config, node: { ...config.node, name: hostname } };
}

test('unset GANTRY_NODE_NAME: the first start keeps its hostname in <dataDir>/node-id, private to Gantry, and later starts under other hostnames keep that name', () => {
  const dataDir = path.join(scratch(), 'data');
  assert.equal(settleNodeName(started(dataDir, 'host-a')).node.name, 'host-a');
  const file = path.join(dataDir, NODE_ID_FILE);
  assert.equal(fs.readFileSync(file, 'utf8'), 'host-a\n');
  assert.equal(fs.statSync(file).mode & 0o777, 0o600, 'the file is readable by Gantry alone');
  assert.equal(fs.statSync(dataDir).mode & 0o777, 0o700, 'a data dir Gantry creates is its own');
  assert.equal(settleNodeName(started(dataDir, 'host-b')).node.name, 'host-a');
  assert.equal(settleNodeName(started(dataDir, 'host-c')).node.name, 'host-a');
  assert.equal(fs.readFileSync(file, 'utf8'), 'host-a\n', 'never rewritten');
  assert.deepEqual(fs.readdirSync(dataDir), [NODE_ID_FILE], 'no temporary file is left');
});

test('the default first value is the real hostname', () => {
  const dataDir = scratch();
  assert.equal(settleNodeName(loadConfig({ GANTRY_DATA_DIR: dataDir })).node.name, os.hostname());
  assert.equal(fs.readFileSync(path.join(dataDir, NODE_ID_FILE), 'utf8'), `${os.hostname()}\n`);
});

test('GANTRY_NODE_NAME wins over a kept name, and nothing is written for it', () => {
  const kept = scratch();
  settleNodeName(started(kept, 'host-a'));
  assert.equal(settleNodeName(started(kept, 'host-b', { GANTRY_NODE_NAME: 'gpu-7' })).node.name, 'gpu-7');
  assert.equal(fs.readFileSync(path.join(kept, NODE_ID_FILE), 'utf8'), 'host-a\n');
  const fresh = path.join(scratch(), 'never-made');
  assert.equal(settleNodeName(started(fresh, 'host-a', { GANTRY_NODE_NAME: 'gpu-7' })).node.name, 'gpu-7');
  assert.equal(fs.existsSync(fresh), false, 'an explicit name touches no data dir');
});

test('a node-id that cannot be read is a ConfigError naming the file, never a new name', () => {
  const dataDir = scratch();
  const file = path.join(dataDir, NODE_ID_FILE);
  // A directory where the file should be: unreadable as a file even for root.
  fs.mkdirSync(file);
  assert.throws(
    () => settleNodeName(started(dataDir, 'host-a')),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.problems.length === 1 &&
      err.problems[0]!.startsWith(`GANTRY_DATA_DIR: cannot read this node's name from ${file} (`) &&
      err.problems[0]!.includes('GANTRY_NODE_NAME'),
  );
});

test('a node-id that holds no node name is a ConfigError naming the file', () => {
  for (const text of ['', '\n', 'has space\n', '-leading-dash\n']) {
    const dataDir = scratch();
    const file = path.join(dataDir, NODE_ID_FILE);
    fs.writeFileSync(file, text);
    assert.throws(
      () => settleNodeName(started(dataDir, 'host-a')),
      (err: unknown) => err instanceof ConfigError && err.problems[0]!.startsWith(`GANTRY_DATA_DIR: ${file} does not hold a node name`),
      JSON.stringify(text),
    );
    assert.equal(fs.readFileSync(file, 'utf8'), text, 'left as it was');
  }
});

test('a data dir where the name cannot be written is a ConfigError naming the file', () => {
  const parent = scratch();
  // A file where the data dir should be: no directory, and so no node-id, can be made there.
  const dataDir = path.join(parent, 'data');
  fs.writeFileSync(dataDir, '');
  assert.throws(
    () => settleNodeName(started(dataDir, 'host-a')),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.problems[0]!.startsWith(`GANTRY_DATA_DIR: cannot keep this node's name in ${path.join(dataDir, NODE_ID_FILE)} (`),
  );
});

test('a hostname that is no node name is refused rather than kept', () => {
  const dataDir = scratch();
  assert.throws(
    () => settleNodeName(started(dataDir, 'bad host')),
    (err: unknown) => err instanceof ConfigError && err.problems[0]!.startsWith('GANTRY_NODE_NAME: unset, and the hostname "bad host"'),
  );
  assert.equal(fs.existsSync(path.join(dataDir, NODE_ID_FILE)), false);
});
