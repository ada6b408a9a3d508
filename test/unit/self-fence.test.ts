import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { SelfFence, selfFenceAfterMs } from '../../src/runner/self-fence.js';
import { harness, spec } from '../helpers/scheduler-harness.js';

// Fencing by time: a node whose lease has not been renewed for 0.6 of it
// stops the runs the fleet would start again elsewhere (a node_lost retry),
// once per outage, and leaves the others running. The seat is the seam: a
// stand-in says how old the last good renewal is.

const LEASE_SECONDS = 30;

test('a lease too old stops, once, the runs a node_lost retry would start elsewhere; the others run on', async (t) => {
  const h = await harness(t);
  const retried = await h.submit(spec({ retry: { maxAttempts: 3, on: ['node_lost'] } }));
  const once = await h.submit();
  await h.until(retried, (j) => j.state === 'running');
  await h.until(once, (j) => j.state === 'running');
  let since = 1000;
  const seat = { name: 'node-1', labels: {}, shared: true, epoch: () => 1, drained: () => false, sinceRenewed: () => since };
  const fence = new SelfFence({ seat, runs: h.runs, leaseSeconds: LEASE_SECONDS, stopGraceSeconds: 0, log: pino({ level: 'silent' }) });

  await fence.check();
  assert.equal(
    (await h.jobs.get({ owner: 'team-a', scopes: new Set(['read']), isAdmin: false }, retried)).state,
    'running',
    'a fresh lease stops nothing',
  );

  since = selfFenceAfterMs(LEASE_SECONDS) + 1;
  await fence.check();
  const next = await h.until(retried, (j) => j.attempt === 2);
  const first = next.attempts[0]!;
  assert.equal(first.cause, 'node_lost');
  assert.match(first.reason ?? '', /could not renew its lease for \d+ s/);
  assert.equal((await h.until(once, () => true)).state, 'running', 'a job no retry would start elsewhere runs on');

  // Once per outage: the attempt that runs now (this node's seat is fine in
  // the harness) is not stopped again while the same outage lasts.
  await h.until(retried, (j) => j.state === 'running' && j.attempt === 2);
  await fence.check();
  assert.equal((await h.until(retried, () => true)).state, 'running');

  // A renewal in time ends the outage; a later one fences again.
  since = 1000;
  await fence.check();
  since = selfFenceAfterMs(LEASE_SECONDS) + 1;
  await fence.check();
  assert.equal((await h.until(retried, (j) => j.attempt === 3)).attempts[1]?.cause, 'node_lost');
});

test('the bound: a healthy lease is never old enough to fence, and a fence with the stop grace ends before the lease', () => {
  // Renewed every third of the lease, each within a sixth: a good renewal is at most half a lease old.
  const worstHealthyMs = LEASE_SECONDS * 1000 * (1 / 3 + 1 / 6);
  assert.ok(selfFenceAfterMs(LEASE_SECONDS) > worstHealthyMs);
  const defaultGraceSeconds = 10;
  assert.ok(
    selfFenceAfterMs(LEASE_SECONDS) + defaultGraceSeconds * 1000 < LEASE_SECONDS * 1000,
    'the default grace fits in the default lease',
  );
});
