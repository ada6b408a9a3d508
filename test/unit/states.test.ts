import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  assertTransition,
  canTransition,
  IllegalTransitionError,
  isTerminal,
  JOB_STATES,
  TERMINAL_STATES,
} from '../../src/model/states.js';

test('the happy path is legal', () => {
  const path = ['queued', 'pulling', 'starting', 'running', 'succeeded'] as const;
  for (let i = 1; i < path.length; i++) assert.ok(canTransition(path[i - 1]!, path[i]!), `${path[i - 1]} → ${path[i]}`);
});

test('terminal states never change again', () => {
  for (const from of TERMINAL_STATES) for (const to of JOB_STATES) assert.equal(canTransition(from, to), false, `${from} → ${to}`);
});

test('a queued job can be cancelled but never skip to running or succeed', () => {
  assert.ok(canTransition('queued', 'cancelled'));
  assert.equal(canTransition('queued', 'running'), false);
  assert.equal(canTransition('queued', 'succeeded'), false);
  assert.equal(canTransition('queued', 'timed_out'), false);
});

test('only a started job can time out or succeed', () => {
  for (const s of ['queued', 'pulling'] as const) {
    assert.equal(canTransition(s, 'timed_out'), false);
    assert.equal(canTransition(s, 'succeeded'), false);
  }
  assert.ok(canTransition('running', 'timed_out'));
});

test('no state goes back, except to the queue: before the container exists (the engine went away), or as a new attempt (a retry)', () => {
  const order = JOB_STATES.indexOf.bind(JOB_STATES);
  const back = new Set(['queued → queued', 'pulling → queued', 'starting → queued', 'running → queued']);
  for (const from of JOB_STATES) {
    for (const to of JOB_STATES) {
      if (canTransition(from, to)) assert.ok(order(to) > order(from) || back.has(`${from} → ${to}`), `${from} → ${to}`);
    }
  }
  assert.equal(canTransition('succeeded', 'queued'), false);
  assert.equal(canTransition('failed', 'queued'), false);
});

test('assertTransition throws a typed error', () => {
  assert.throws(() => assertTransition('succeeded', 'running'), IllegalTransitionError);
  assert.equal(isTerminal('timed_out'), true);
  assert.equal(isTerminal('running'), false);
});
