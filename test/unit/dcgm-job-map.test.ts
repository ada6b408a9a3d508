/**
 * dcgm-exporter's job mapping as Gantry keeps it (src/gpu/dcgm-job-map.ts),
 * in a real directory: one file per held GPU named by its index, one job id
 * a line; no file for a free card; rebuilt from the holders at start.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { GpuAllocator } from '../../src/gpu/allocator.js';
import { DcgmJobMap } from '../../src/gpu/dcgm-job-map.js';
import type { GpuDevice } from '../../src/gpu/inventory.js';

// Indexes 3 and 5: a file is named by the card's index, not its position in the inventory.
const DEVICES: GpuDevice[] = [
  { index: 3, uuid: 'GPU-3', name: 'static', memoryMiB: 81920 },
  { index: 5, uuid: 'GPU-5', name: 'static', memoryMiB: 81920 },
];

function mapDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-dcgm-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'maps');
}

/** The directory's files and their text. */
const files = (dir: string) => Object.fromEntries(fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f), 'utf8')]));

test('allocate writes the card’s file, a shared card lists every holder, release removes it; nothing else is touched', (t) => {
  const dir = mapDir(t);
  const gpus = new GpuAllocator(DEVICES);
  new DcgmJobMap(dir, gpus, (err) => assert.fail(err)).start();
  assert.deepEqual(files(dir), {}, 'the directory is made, empty');

  gpus.tryAllocate('job-a', { ids: ['5'] });
  assert.deepEqual(files(dir), { '5': 'job-a\n' });
  gpus.tryAllocate('job-s1', { count: 1, memoryMiB: 20000 });
  gpus.tryAllocate('job-s2', { count: 1, memoryMiB: 20000 });
  assert.deepEqual(files(dir), { '3': 'job-s1\njob-s2\n', '5': 'job-a\n' });

  // Trying allocations out on a copy writes nothing.
  const copy = gpus.clone();
  copy.release('job-a');
  copy.tryAllocate('job-x', { count: 1 });
  assert.deepEqual(files(dir), { '3': 'job-s1\njob-s2\n', '5': 'job-a\n' });

  gpus.release('job-s1');
  assert.deepEqual(files(dir), { '3': 'job-s2\n', '5': 'job-a\n' });
  gpus.release('job-s2');
  gpus.release('job-a');
  assert.deepEqual(files(dir), {}, 'a free card has no file (an empty one would hide its metrics)');
});

test('start removes the files a dead process left for this host’s cards, keeps other files, and follows restores', (t) => {
  const dir = mapDir(t);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, '3'), 'job-gone\n');
  fs.writeFileSync(path.join(dir, '5'), 'job-kept\n');
  fs.writeFileSync(path.join(dir, '7'), 'someone-else\n');
  fs.writeFileSync(path.join(dir, 'README'), 'not a mapping\n');
  const gpus = new GpuAllocator(DEVICES);
  new DcgmJobMap(dir, gpus, (err) => assert.fail(err)).start();
  assert.deepEqual(files(dir), { '7': 'someone-else\n', README: 'not a mapping\n' });

  gpus.restore('job-kept', { uuids: ['GPU-5', 'GPU-gone-from-inventory'], memoryMiB: null });
  assert.deepEqual(files(dir), { '5': 'job-kept\n', '7': 'someone-else\n', README: 'not a mapping\n' });
});

test('holders restored before start are written at start', (t) => {
  const dir = mapDir(t);
  const gpus = new GpuAllocator(DEVICES);
  gpus.restore('job-a', { uuids: ['GPU-3', 'GPU-5'], memoryMiB: null });
  new DcgmJobMap(dir, gpus, (err) => assert.fail(err)).start();
  assert.deepEqual(files(dir), { '3': 'job-a\n', '5': 'job-a\n' });
});

test('a file that cannot be written is reported, never thrown: the allocation stands, and no temporary file is left', (t) => {
  const dir = mapDir(t);
  fs.mkdirSync(path.join(dir, '3', 'blocker'), { recursive: true });
  const errors: string[] = [];
  const gpus = new GpuAllocator(DEVICES);
  new DcgmJobMap(dir, gpus, (_err, file) => errors.push(path.basename(file))).start();
  assert.deepEqual(errors, ['3'], 'the stale entry could not be removed');
  assert.deepEqual(gpus.tryAllocate('job-a', { ids: ['3'] }), { uuids: ['GPU-3'], memoryMiB: null });
  assert.deepEqual(errors, ['3', '3']);
  assert.deepEqual(fs.readdirSync(dir), ['3']);
});
