import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { startGantry, TEST_IMAGE } from '../helpers/gantry.js';

// A job that asks for a result file (spec.resultFile) may write one JSON
// document to the file GANTRY_RESULT_FILE names: it becomes the job's
// `result`, redacted like the log; each attempt has its own folder, so a
// last attempt that writes none falls back to its own last stdout line;
// what Gantry cannot take is told in the log, never taken.

const sh = (script: string, extra: Record<string, unknown> = {}) => ({ image: TEST_IMAGE, command: ['sh', '-c', script], ...extra });

test('the document a job writes is its result, redacted; the folder goes with the run; a job not asking has none', async (t) => {
  const g = await startGantry(t);
  const job = await g.submit(
    sh('echo last-line; printf \'{"accuracy": 0.93, "token": "%s", "n": [1, 2]}\' "$API_KEY" > "$GANTRY_RESULT_FILE"', {
      resultFile: true,
      privateEnv: { API_KEY: 'sk-private-4242' },
    }),
  );
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'succeeded', done.reason ?? '');
  assert.deepEqual(done.result, { accuracy: 0.93, token: '[secret:privateEnv.API_KEY]', n: [1, 2] });
  const left = fs.readdirSync(path.join(g.dataDir, 'results'), { recursive: true });
  assert.deepEqual(
    left.filter((f) => String(f).includes(job.id)),
    [],
    'the attempt folder is removed once the end is recorded',
  );

  const plain = await g.waitFor((await g.submit(sh('test -z "$GANTRY_RESULT_FILE" && echo no-result-file'))).id);
  assert.equal(plain.result, 'no-result-file');
});

test('each attempt has its own result: a last attempt writing none gives its own last stdout line', async (t) => {
  const g = await startGantry(t);
  const job = await g.submit(
    sh('if [ "$GANTRY_ATTEMPT" = 1 ]; then echo \'{"from": 1}\' > "$GANTRY_RESULT_FILE"; exit 3; fi; echo second-attempt', {
      resultFile: true,
      retry: { maxAttempts: 2, on: ['exit_code'] },
    }),
  );
  const done = await g.waitFor(job.id, undefined, 60_000);
  assert.equal(done.state, 'succeeded', done.reason ?? '');
  assert.equal(done.attempt, 2);
  assert.equal(done.result, 'second-attempt');
});

test('a file over GANTRY_RESULT_MAX_BYTES, or not JSON, is refused and told in the log; the result is then null', async (t) => {
  const g = await startGantry(t, { GANTRY_RESULT_MAX_BYTES: '64' });
  const big = await g.submit(sh('echo out; head -c 100 /dev/zero | tr "\\0" 1 > "$GANTRY_RESULT_FILE"', { resultFile: true }));
  const notJson = await g.submit(sh('echo out; echo "{not json" > "$GANTRY_RESULT_FILE"', { resultFile: true }));
  for (const [id, why] of [
    [big.id, /holds 100 bytes, more than 64 \(GANTRY_RESULT_MAX_BYTES\)/],
    [notJson.id, /not one JSON document/],
  ] as const) {
    const done = await g.waitFor(id);
    assert.equal(done.result, null);
    const logs = await g.call('GET', `/v1/jobs/${id}/logs`);
    assert.match(logs.text, /\[gantry\] the result file is not taken as the job's result: /);
    assert.match(logs.text, why);
  }
});
