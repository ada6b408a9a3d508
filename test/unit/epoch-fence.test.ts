import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FencedError } from '../../src/model/errors.js';
import { EMPTY_LOG_STATE } from '../../src/model/log.js';
import { harness } from '../helpers/scheduler-harness.js';

// Two processes of one node name share (node, attempt): the epoch in the
// fence tells them apart. A newer process that adopts a run stamps the job
// with its epoch, and from then on the older one (paused, say, and woken
// later) can write nothing about it, neither the job nor its log.

test("a restarted node adopts its running job under its new epoch; the old process's writes are refused", async (t) => {
  let h = await harness(t);
  const id = await h.submit();
  const before = await h.until(id, (j) => j.state === 'running');
  const old = (await h.store.jobs.get(id))!;
  assert.ok(old.nodeEpoch > 0, 'the claim stamped the process that took it');
  const oldFence = { node: 'node-1', attempt: before.attempt, epoch: old.nodeEpoch };

  h = await h.restart();
  const adopted = await h.until(id, (j) => j.state === 'running');
  assert.equal(adopted.attempt, 1);
  const now = (await h.store.jobs.get(id))!;
  assert.ok(now.nodeEpoch > old.nodeEpoch, 'the adoption stamped the new process');

  await assert.rejects(h.jobs.patch(id, { result: 'from the old process' }, oldFence), FencedError);
  await assert.rejects(h.jobs.transition(id, 'failed', { finishedAt: new Date().toISOString() }, oldFence), FencedError);
  const logState = await h.store.logs.state(id);
  await assert.rejects(
    h.store.logs.append(
      id,
      [{ stream: 'stdout', time: Date.now(), line: 'stale' }],
      { ...EMPTY_LOG_STATE, ...logState, nextSeq: logState.nextSeq + 1 },
      oldFence,
    ),
    FencedError,
  );

  // The new process's run goes on and ends the job.
  h.runtime.exit((await h.runtime.containerOf(id)).id, 0);
  const done = await h.until(id);
  assert.equal(done.state, 'succeeded');
  assert.equal(done.result, null);
});
