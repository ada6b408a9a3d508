import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type OutcomeInput, outcomeOf } from '../../src/runner/outcome.js';

const base: OutcomeInput = {
  exit: { exitCode: 0, oomKilled: false, error: null },
  cancelRequested: false,
  interrupted: null,
  timedOut: false,
  timeoutSeconds: 60,
  memoryMiB: 512,
  logError: null,
  engineLost: false,
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

test('a cancel or a timeout explains the stop, whatever the exit code; cancel wins over timeout', () => {
  assert.deepEqual(of({ exitCode: 143, cancelRequested: true }), { state: 'cancelled', reason: 'cancelled by request', cause: null });
  assert.deepEqual(of({ exitCode: 0, timedOut: true }), {
    state: 'timed_out',
    reason: 'exceeded its timeout of 60 s and was stopped',
    cause: 'timeout',
  });
  assert.equal(of({ exitCode: 143, timedOut: true, cancelRequested: true }).state, 'cancelled');
});

test('an incomplete log is noted on every outcome', () => {
  assert.deepEqual(of({ logError: 'disk full' }), { state: 'succeeded', reason: 'logs incomplete: disk full', cause: null });
  assert.equal(of({ exitCode: 1, logError: 'disk full' }).reason, 'exited with code 1; logs incomplete: disk full');
});

test("a container that stopped while the engine was away is the engine's doing, not the job's", () => {
  const r = of({ exitCode: 143, engineLost: true });
  assert.equal(r.state, 'failed');
  assert.equal(r.cause, null, 'no retry rule can name it');
  assert.match(r.reason!, /^the container stopped while the container engine was away \(exit code 143\).*live-restore/);
  assert.deepEqual(
    of({ exitCode: 0, engineLost: true }),
    { state: 'succeeded', reason: null, cause: null },
    'a job that finished meanwhile still succeeded',
  );
});

test('an interruption by Gantry explains the stop, whatever the exit code; a cancel still wins over it', () => {
  const interrupted = { cause: 'preempted' as const, reason: 'preempted for job j2' };
  assert.deepEqual(of({ interrupted, exitCode: 143 }), { state: 'failed', reason: 'preempted for job j2', cause: 'preempted' });
  assert.deepEqual(of({ interrupted, exitCode: 0, timedOut: true }), {
    state: 'failed',
    reason: 'preempted for job j2',
    cause: 'preempted',
  });
  assert.equal(of({ interrupted, cancelRequested: true, exitCode: 143 }).state, 'cancelled');
});
