// Gantry's own log must never stall it: a process manager or log driver that
// stops reading Gantry's stdout costs (at worst) log lines, not the API.
// Before src/logging.ts, a full stdout pipe froze the event loop in 100 ms
// sleeps until the reader came back (pino's synchronous writes on EAGAIN).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { ADMIN_TOKEN, spawnGantry, TEST_IMAGE, tempDir } from '../helpers/gantry.js';

const requestLines = (out: string, url: string) =>
  out.split('\n').filter((l) => l.startsWith('{') && l.includes('"msg":"request"') && l.includes(`"url":"${url}"`)).length;

test('stdout not read: polls are answered and a job runs; every line arrives once the reader is back, and shutdown flushes', async (t) => {
  const g = await spawnGantry(tempDir(), { GANTRY_LOG_LEVEL: 'info' }); // one line per request
  t.after(() => g.stop('SIGKILL'));
  g.proc.stdout!.pause();
  const job = await g.submit({ image: TEST_IMAGE, command: ['echo', 'ran while the log was not read'] });
  // ~4,000 request lines (~1 MB): several times what the pipe holds.
  const polls = 4000;
  const url = '/v1/gpus';
  let issued = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (issued < polls) {
        issued += 1;
        // A stalled Gantry fails here (no answer within 15 s), not at the test's timeout.
        const r = await request(g.url + url, {
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
          headersTimeout: 15_000,
          bodyTimeout: 15_000,
        });
        await r.body.text();
        assert.equal(r.statusCode, 200);
      }
    }),
  );
  const done = await g.waitFor(job.id);
  assert.equal(done.state, 'succeeded', 'the job ran to its end while nothing read the log');
  assert.equal(done.result, 'ran while the log was not read');
  assert.equal(requestLines(g.output(), url), 0, 'nothing was read yet: the lines are queued in the pipe and in Gantry');

  g.proc.stdout!.resume();
  const sent = issued;
  for (let i = 0; i < 100 && requestLines(g.output(), url) < sent; i++) await sleep(100);
  assert.equal(requestLines(g.output(), url), sent, 'one line per request, none dropped (the backlog fits the 8 MiB buffer)');
  const metrics = await g.call('GET', '/metrics');
  assert.match(metrics.text, /^gantry_process_log_dropped_lines_total 0$/m);

  // Shutdown with a backlog again: the last lines still reach stdout before exit.
  g.proc.stdout!.pause();
  for (let i = 0; i < 1500; i++) await (await request(`${g.url}/healthz`)).body.text();
  const before = requestLines(g.output(), '/healthz'); // spawnGantry's own start-up probes
  const exited = g.stop('SIGTERM');
  await sleep(500);
  g.proc.stdout!.resume();
  assert.equal(await exited, 0);
  assert.equal(requestLines(g.output(), '/healthz'), before + 1500, 'the backlog reached stdout before exit');
  assert.match(g.output(), /"msg":"shutting down; running containers are left running"/);
});
