/**
 * `npm run chaos`: longer fault campaigns over several seeds, one after the
 * other, printing each seed's figures (faults by kind, jobs, attempts,
 * invariant violations, time to converge per fault kind). CHAOS_SEEDS=1,2,3
 * picks the seeds, CHAOS_SECONDS the time of faults per seed, in seconds,
 * CHAOS_LEASE the nodes' lease in seconds (4 by default).
 * Not part of the suite (its name is no *.test.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatFigures, runCampaign } from './campaign.js';

const seeds = (process.env.CHAOS_SEEDS ?? '11,12,13').split(',').map(Number);
const seconds = Number(process.env.CHAOS_SECONDS ?? 120);
const leaseSeconds = Number(process.env.CHAOS_LEASE ?? 4);

for (const seed of seeds) {
  test(`fault campaign, seed ${seed}, ${seconds} s of faults`, { timeout: (seconds + 400) * 1000 }, async (t) => {
    const figures = await runCampaign(t, { seed, faultSeconds: seconds, leaseSeconds });
    console.log(formatFigures(figures));
    assert.deepEqual(
      figures.violations,
      [],
      `seed ${seed} broke an invariant (replay with CHAOS_SEEDS=${seed} CHAOS_SECONDS=${seconds} npm run chaos)`,
    );
  });
}
