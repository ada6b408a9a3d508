/**
 * A short fault campaign (test/chaos/campaign.ts) on a real fleet of three
 * nodes: one seed, a minute of random faults (a node's database link cut,
 * frozen or slowed; a Gantry paused or killed and restarted; PostgreSQL
 * restarted) under a stream of jobs, then the invariants checked once the
 * fleet has converged: every job ends exactly once, a success keeps all its
 * lines in order, attempts overlap no longer than a lease and the stop
 * grace, answered cancels end their jobs cancelled, and no container or GPU
 * hold is left anywhere. CHAOS_SEED=n replays a seed; `npm run chaos` runs
 * longer campaigns over several seeds.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatFigures, runCampaign } from '../chaos/campaign.js';

const SEED = Number(process.env.CHAOS_SEED ?? 1);

test(`fault campaign, seed ${SEED}: every invariant holds once the faults heal`, { timeout: 420_000 }, async (t) => {
  const figures = await runCampaign(t, { seed: SEED, faultSeconds: 60 });
  t.diagnostic(formatFigures(figures));
  assert.ok(figures.jobs > 0, 'the campaign submitted jobs');
  assert.deepEqual(figures.violations, [], `seed ${SEED} broke an invariant (replay with CHAOS_SEED=${SEED}):\n${formatFigures(figures)}`);
});
