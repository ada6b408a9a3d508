import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { JobFailure } from '../../src/runner/hooks/hook.js';
import { ResultHook } from '../../src/runner/hooks/result.js';
import { RESULT_ENV, RESULT_FILE, RESULT_MOUNT, ResultFolder, redactDocument } from '../../src/runner/result-file.js';
import { tempDir } from '../helpers/gantry.js';

// A job's result file is the job's own: Gantry takes it only as one regular
// file of one JSON document within the size cap, never follows a link out
// of the folder, never blocks on it, and the folder is writable by any user
// while its root stays closed to other host users.

async function folder(): Promise<{ f: ResultFolder; file: string; root: string }> {
  const root = path.join(tempDir(), 'results');
  const f = new ResultFolder(root, 'node-a', 'job-1', 2);
  await f.prepare();
  return { f, file: path.join(root, 'node-a', 'job-1-2', 'result.json'), root };
}

test('the folder is per node, job and attempt, writable by any user under a 0700 root, and mounted writable', async () => {
  const { f, file, root } = await folder();
  assert.equal(fs.statSync(root).mode & 0o777, 0o700);
  assert.equal(fs.statSync(path.dirname(file)).mode & 0o777, 0o777);
  assert.deepEqual(f.mount(), {
    mount: { type: 'bind', source: path.dirname(file), target: RESULT_MOUNT, readOnly: false },
    env: { [RESULT_ENV]: RESULT_FILE },
  });
  await f.remove();
  assert.equal(fs.existsSync(path.dirname(file)), false);
});

test('no file is no document; one JSON document is taken as it is', async () => {
  const { f, file } = await folder();
  assert.deepEqual(await f.read(1024), { kind: 'none' });
  fs.writeFileSync(file, '{"accuracy": 0.93, "tags": ["a"]}\n');
  assert.deepEqual(await f.read(1024), { kind: 'document', document: { accuracy: 0.93, tags: ['a'] } });
});

test('too large, not JSON, not UTF-8, a link or a FIFO is refused with why', async () => {
  const { f, file } = await folder();
  const refused = async (max = 1024) => {
    const r = await f.read(max);
    assert.equal(r.kind, 'refused', JSON.stringify(r));
    return (r as { why: string }).why;
  };
  fs.writeFileSync(file, JSON.stringify({ x: 'y'.repeat(100) }));
  assert.match(await refused(50), /more than 50 \(GANTRY_RESULT_MAX_BYTES\)/);
  fs.writeFileSync(file, '{"a": 1} trailing');
  assert.match(await refused(), /not one JSON document/);
  fs.writeFileSync(file, Buffer.from([0x22, 0xff, 0x22]));
  assert.match(await refused(), /not one JSON document in UTF-8/);
  fs.rmSync(file);
  fs.symlinkSync('/etc/hostname', file);
  assert.match(await refused(), /cannot be opened as a file \(ELOOP\)/);
  fs.rmSync(file);
  execFileSync('mkfifo', [file]);
  assert.match(await refused(), /not a regular file/);
});

test('redaction reaches every string of the document, keys included, and leaves other values', () => {
  const redact = (s: string) => s.replaceAll('hunter22', '[secret:pw]');
  assert.deepEqual(redactDocument({ hunter22: ['x hunter22 y', 3, null, true, { k: 'hunter22' }] }, redact), {
    '[secret:pw]': ['x [secret:pw] y', 3, null, true, { k: '[secret:pw]' }],
  });
});

test('a result folder that cannot be made fails the job before it runs, naming GANTRY_RESULT_DIR', async () => {
  const notADir = path.join(tempDir(), 'a-file');
  fs.writeFileSync(notADir, '');
  const hook = new ResultHook({ resultDir: notADir, maxBytes: 1024, node: 'n', jobId: 'j', attempt: 1, log: pino({ level: 'silent' }) });
  await assert.rejects(hook.prestart(), (err: Error) => err instanceof JobFailure && /GANTRY_RESULT_DIR/.test(err.message));
});
