import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type OutcomeInput, outcomeBeforeStart, outcomeOf } from '../../src/runner/outcome.js';

const base: OutcomeInput = {
  exit: { exitCode: 0, oomKilled: false, error: null },
  stop: null,
  timeoutSeconds: 60,
  memoryMiB: 512,
  logError: null,
};
const of = (o: Partial<OutcomeInput> & { exitCode?: number | null; oomKilled?: boolean; error?: string | null }) =>
  outcomeOf({
    ...base,
    ...o,
    exit: { exitCode: o.exitCode ?? 0, oomKilled: o.oomKilled ?? false, error: o.error ?? null },
  });

test("exit 0 is success; any other code is a failure with the code and the engine's error", () => {
  assert.deepEqual(of({}), { state: 'succeeded', reason: null, cause: null });
  assert.deepEqual(of({ exitCode: 3 }), { state: 'failed', reason: 'exited with code 3', cause: 'exit_code' });
  assert.deepEqual(of({ exitCode: 127, error: 'exec failed' }), {
    state: 'failed',
    reason: 'exited with code 127: exec failed',
    cause: 'exit_code',
  });
});

test('an OOM kill fails the job even with exit 0, naming the limit', () => {
  assert.deepEqual(of({ exitCode: 0, oomKilled: true }), {
    state: 'failed',
    reason: 'OOMKilled: the container exceeded its memory limit of 512 MiB',
    cause: 'oom',
  });
});

test('a cancel or a timeout explains the stop, whatever the exit code', () => {
  assert.deepEqual(of({ exitCode: 143, stop: { kind: 'cancel' } }), { state: 'cancelled', reason: 'cancelled by request', cause: null });
  assert.deepEqual(of({ exitCode: 0, stop: { kind: 'timeout' } }), {
    state: 'timed_out',
    reason: 'exceeded its timeout of 60 s and was stopped',
    cause: 'timeout',
  });
});

test('an incomplete log is noted on every outcome', () => {
  assert.deepEqual(of({ logError: 'disk full' }), { state: 'succeeded', reason: 'logs incomplete: disk full', cause: null });
  assert.equal(of({ exitCode: 1, logError: 'disk full' }).reason, 'exited with code 1; logs incomplete: disk full');
  assert.equal(of({ stop: { kind: 'cancel' }, logError: 'disk full' }).reason, 'cancelled by request; logs incomplete: disk full');
});

test("a container that stopped while the engine was away is the engine's doing, not the job's", () => {
  const r = of({ exitCode: 143, stop: { kind: 'engine_lost' } });
  assert.equal(r.state, 'failed');
  assert.equal(r.cause, null, 'no retry rule can name it');
  assert.match(r.reason!, /^the container stopped while the container engine was away \(exit code 143\).*live-restore/);
  assert.deepEqual(
    of({ exitCode: 0, stop: { kind: 'engine_lost' } }),
    { state: 'succeeded', reason: null, cause: null },
    'a job that finished meanwhile still succeeded',
  );
});

test('an interruption by Gantry explains the stop, whatever the exit code', () => {
  const stop = { kind: 'interrupt' as const, cause: 'preempted' as const, reason: 'preempted for job j2' };
  assert.deepEqual(of({ stop, exitCode: 143 }), { state: 'failed', reason: 'preempted for job j2', cause: 'preempted' });
  assert.deepEqual(of({ stop, exitCode: 0 }), { state: 'failed', reason: 'preempted for job j2', cause: 'preempted' });
});

test('a cancel or an interruption before the container started ends the attempt there; a timeout or nothing does not', () => {
  assert.deepEqual(outcomeBeforeStart({ kind: 'cancel' }, 'while the image was pulled'), {
    state: 'cancelled',
    reason: 'cancelled while the image was pulled',
    cause: null,
  });
  assert.deepEqual(outcomeBeforeStart({ kind: 'interrupt', cause: 'gpu_error', reason: 'card lost' }, 'before it started'), {
    state: 'failed',
    reason: 'card lost',
    cause: 'gpu_error',
  });
  assert.equal(outcomeBeforeStart({ kind: 'timeout' }, 'before it started'), null);
  assert.equal(outcomeBeforeStart(null, 'before it started'), null);
});
