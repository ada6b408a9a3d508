import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RunState } from '../../src/runner/run-state.js';

const fresh = () => new RunState({ hasContainer: false, cancelRequested: false });
const preempted = { cause: 'preempted' as const, reason: 'preempted for job j2' };
const gpuError = { cause: 'gpu_error' as const, reason: 'Xid 79 on its card' };
/** Read through a call, so an assertion on one reading does not narrow the next. */
const kind = (s: RunState) => s.stop?.kind;

test('a run starts preparing, or created when its record names a container, and only moves forward', () => {
  const s = fresh();
  assert.equal(s.phase, 'preparing');
  assert.equal(s.hasContainer, false);
  s.advance('created');
  assert.equal(s.hasContainer, true);
  s.advance('created');
  s.advance('started');
  s.advance('exited');
  s.advance('exited');
  assert.throws(() => s.advance('started'), /cannot go back from exited to started/);
  assert.equal(s.phase, 'exited');
  assert.equal(new RunState({ hasContainer: true, cancelRequested: false }).phase, 'created');
});

test('a cancel outranks every other reason and stays, whenever it came', () => {
  for (const before of [(s: RunState) => s.interrupt(preempted), (s: RunState) => s.timeout(), (s: RunState) => s.engineLost()]) {
    const s = fresh();
    before(s);
    s.requestCancel();
    assert.deepEqual(s.stop, { kind: 'cancel' });
    assert.equal(s.cancelled, true);
    assert.equal(s.interruption, null);
    assert.equal(s.interrupt(gpuError), false, 'an interruption after a cancel is refused');
    s.timeout();
    s.engineLost();
    assert.deepEqual(s.stop, { kind: 'cancel' });
  }
  const stored = new RunState({ hasContainer: false, cancelRequested: true });
  assert.equal(stored.cancelled, true, "a cancel stored on the job's record is the run's from the start");
  assert.equal(stored.interrupt(preempted), false);
});

test('the first interruption is kept with its cause; a later one is refused', () => {
  const s = fresh();
  assert.equal(s.interrupt(preempted), true);
  assert.equal(s.interrupt(gpuError), false);
  assert.deepEqual(s.interruption, preempted);
  assert.deepEqual(s.stop, { kind: 'interrupt', ...preempted });
});

test('an interruption outranks a timeout, before or after it; a timeout outranks the engine going away', () => {
  const timedOutFirst = fresh();
  timedOutFirst.timeout();
  assert.equal(timedOutFirst.interrupt(preempted), true);
  assert.equal(kind(timedOutFirst), 'interrupt');
  const interruptedFirst = fresh();
  interruptedFirst.interrupt(preempted);
  interruptedFirst.timeout();
  assert.equal(kind(interruptedFirst), 'interrupt');
  const lost = fresh();
  lost.engineLost();
  assert.equal(kind(lost), 'engine_lost');
  lost.timeout();
  assert.equal(kind(lost), 'timeout');
  lost.engineLost();
  assert.equal(kind(lost), 'timeout');
});

test("only Gantry's own reasons count as a stop it requested", () => {
  const s = fresh();
  assert.equal(s.stopRequested, false);
  assert.equal(s.stop, null);
  s.engineLost();
  assert.equal(s.stopRequested, false, 'the engine going away is no request to stop');
  s.timeout();
  assert.equal(s.stopRequested, true);
});

test('abandonment is recorded once, and leaves the stop reason as it was', () => {
  const s = fresh();
  s.interrupt(preempted);
  assert.equal(s.abandoned, false);
  assert.equal(s.abandon(), true);
  assert.equal(s.abandon(), false);
  assert.equal(s.abandoned, true);
  assert.deepEqual(s.interruption, preempted);
});
