import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_TOKEN, startGantry, TEST_IMAGE } from '../helpers/gantry.js';
import { readSse } from '../helpers/sse.js';

// Followers of one job share formatted chunks (src/logs/follow.ts): every
// client must still get every line exactly once, in order, whatever its
// filter and whenever it joined.
test('several followers of one busy job each get the whole log, in order, as a late reader does', async (t) => {
  const g = await startGantry(t);
  const job = await g.submit({
    image: TEST_IMAGE,
    command: ['sh', '-c', 'for i in 1 2 3 4; do seq $(( (i-1)*5000+1 )) $(( i*5000 )); echo err $i >&2; sleep 0.3; done'],
  });
  const url = `${g.url}/v1/jobs/${job.id}/logs`;
  const logsOf = (r: Awaited<ReturnType<typeof readSse>>) =>
    r.events
      .filter((e) => e.event === 'log')
      .map((e) => ({ id: Number(e.id), ...(JSON.parse(e.data) as { seq: number; stream: string; line: string }) }));
  const [a, b, c, errOnly, text] = await Promise.all([
    readSse(url, ADMIN_TOKEN),
    readSse(url, ADMIN_TOKEN),
    readSse(url, ADMIN_TOKEN),
    readSse(`${url}?stream=stderr`, ADMIN_TOKEN),
    g.call('GET', `/v1/jobs/${job.id}/logs?follow=true`),
  ]);
  const late = await readSse(url, ADMIN_TOKEN);

  const all = logsOf(a);
  assert.equal(all.length, 20_004);
  assert.deepEqual(
    all.map((l) => l.id),
    Array.from({ length: 20_004 }, (_, i) => i + 1),
    'ids contiguous from 1',
  );
  assert.ok(all.every((l) => l.id === l.seq));
  assert.deepEqual(
    all.filter((l) => l.stream === 'stdout').map((l) => l.line),
    Array.from({ length: 20_000 }, (_, i) => String(i + 1)),
  );
  assert.deepEqual(
    all.filter((l) => l.stream === 'stderr').map((l) => l.line),
    ['err 1', 'err 2', 'err 3', 'err 4'],
  );
  for (const other of [b, c, late]) assert.deepEqual(logsOf(other), all, 'every follower and a late reader see the same log');
  assert.deepEqual(
    logsOf(errOnly).map((l) => l.line),
    ['err 1', 'err 2', 'err 3', 'err 4'],
  );
  for (const r of [a, b, c, errOnly, late]) assert.equal(r.events.at(-1)?.event, 'end');
  assert.equal(text.text, all.map((l) => `${l.line}\n`).join(''));
});
