/**
 * A randomized fault campaign over a real fleet: three nodes, each behind a
 * Toxiproxy link to the database, with a short lease and one fake GPU each;
 * a stream of jobs submitted (and some cancelled) through random nodes while
 * faults from the menu (faults.ts) are injected one at a time; then, with
 * every fault healed, a bounded time for the fleet to converge and the
 * invariants (invariants.ts) checked. Everything random is drawn from the
 * seed, so a failing seed replays its draws with CHAOS_SEED=n (the timing
 * of the real processes still varies from run to run).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isTerminal } from '../../src/model/states.js';
import { type Fleet, startFleet } from '../helpers/fleet.js';
import { tempDir } from '../helpers/gantry.js';
import { prng } from '../helpers/records.js';
import { drawFault, FAULT_KINDS, type FaultKind, inject } from './faults.js';
import { awaitEnds, checkJobs, checkLeftovers, checkRealOverlaps, type FaultWindow, fleetUp, pollEnds } from './invariants.js';
import { cancel, planJob, specOf, submit, type TrackedJob } from './jobs.js';

export interface CampaignOptions {
  seed: number;
  /** How long faults are injected; the stream of jobs runs as long. */
  faultSeconds: number;
  leaseSeconds?: number;
  /** How long the jobs have to end once the last fault is healed. */
  convergeSeconds?: number;
}

export interface Figures {
  seed: number;
  faults: Record<FaultKind, number>;
  /** Per fault kind, ms from its heal until every node answers and sees every node up. */
  convergeMs: Record<FaultKind, number[]>;
  jobs: number;
  byState: Record<string, number>;
  attempts: number;
  /** Retried attempts by the cause that ended them (node_lost, preempted, exit_code). */
  retriedBy: Record<string, number>;
  /** The longest two attempts of one job really ran at once (by their ticks), in ms; 0 when never. */
  realOverlapMs: number;
  /** Cancels answered while their job had not ended. */
  cancels: number;
  /** Ms from the last heal until every job had ended; null when some never did within the bound. */
  endsMs: number | null;
  violations: string[];
}

/** Within 0.4 of the shortest lease the campaign runs with (3 s), so a cut-off node's self-fence ends before it is declared lost. */
const STOP_GRACE_SECONDS = 1;
/** A fleet that does not see every node up this long after a heal has not converged: a violation of its own. */
const FLEET_CONVERGE_MS = 60_000;

const between = (rng: () => number, least: number, most: number) => least + rng() * (most - least);

/** Submits jobs until `until`, each through a random node, and cancels the chosen ones at their moment. */
async function jobStream(fleet: Fleet, seed: number, tickDir: string, jobs: TrackedJob[], until: () => boolean): Promise<void> {
  const rng = prng(seed ^ 0x5bd1e995);
  const pending: Promise<void>[] = [];
  for (let index = 1; !until(); index++) {
    const plan = planJob(index, rng);
    const key = `chaos-${seed}-${index}`;
    const pickRng = prng(seed * 1000 + index);
    pending.push(
      (async () => {
        const id = await submit(fleet, specOf(plan, tickDir), key, pickRng, Date.now() + 60_000);
        if (id === null) throw new Error(`job ${index} (key ${key}): no node answered its submit for 60 s`);
        const tracked: TrackedJob = { plan, id, cancels: [], firstEnd: null, endChanged: null, last: null };
        jobs.push(tracked);
        if (plan.cancelAfterMs !== null) {
          await sleep(plan.cancelAfterMs);
          await cancel(fleet, tracked, pickRng);
        }
      })(),
    );
    await sleep(between(rng, 500, 1500));
  }
  await Promise.all(pending);
}

async function untilFleetUp(fleet: Fleet, ms: number): Promise<number | null> {
  const start = Date.now();
  while (Date.now() - start < ms) {
    if (await fleetUp(fleet)) return Date.now() - start;
    await sleep(200);
  }
  return null;
}

export async function runCampaign(t: TestContext, o: CampaignOptions): Promise<Figures> {
  // Each seed keeps its nodes' logs in a folder of its own under GANTRY_FLEET_LOGS (startFleet writes them there after the test).
  const logs = process.env.GANTRY_FLEET_LOGS;
  if (logs) {
    const dir = path.join(logs.replace(/\/seed-\d+$/, ''), `seed-${o.seed}`);
    fs.mkdirSync(dir, { recursive: true });
    process.env.GANTRY_FLEET_LOGS = dir;
  }
  const lease = o.leaseSeconds ?? 4;
  // Jobs run as a non-root user and write their ticks here.
  const tickDir = tempDir('gantry-chaos-ticks-');
  fs.chmodSync(tickDir, 0o777);
  const fleet = await startFleet(t, {
    leaseSeconds: lease,
    nodes: ['a', 'b', 'c'].map((name) => ({ name, proxied: true, gpusMiB: [81920] })),
    env: { GANTRY_LOG_LEVEL: 'warn', GANTRY_STOP_GRACE_SECONDS: String(STOP_GRACE_SECONDS), GANTRY_MOUNT_ALLOWLIST: tickDir },
  });
  const violations: string[] = [];
  if ((await untilFleetUp(fleet, FLEET_CONVERGE_MS)) === null) throw new Error('the fleet never came up');
  const figures: Figures = {
    seed: o.seed,
    faults: Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>,
    convergeMs: Object.fromEntries(FAULT_KINDS.map((k) => [k, []])) as unknown as Record<FaultKind, number[]>,
    jobs: 0,
    byState: {},
    attempts: 0,
    retriedBy: {},
    realOverlapMs: 0,
    cancels: 0,
    endsMs: null,
    violations,
  };
  const jobs: TrackedJob[] = [];
  const windows: FaultWindow[] = [];
  const faultsEnd = Date.now() + o.faultSeconds * 1000;
  const stream = jobStream(fleet, o.seed, tickDir, jobs, () => Date.now() >= faultsEnd);

  // The jobs are read all along, so a job that ends and then leaves or changes its end is seen even while faults go on.
  const poller = (async () => {
    while (Date.now() < faultsEnd) {
      await pollEnds(fleet, jobs);
      await sleep(2000);
    }
  })();
  const rng = prng(o.seed);
  while (Date.now() < faultsEnd) {
    await sleep(between(rng, 1000, 3000));
    const fault = drawFault(fleet, lease, rng);
    const from = Date.now();
    await inject(fleet, fault);
    windows.push({ from, to: Date.now(), kind: fault.kind, node: fault.node });
    figures.faults[fault.kind]++;
    const took = await untilFleetUp(fleet, FLEET_CONVERGE_MS);
    if (took === null)
      violations.push(
        `after ${fault.kind} of ${fault.node ?? 'the database'} (${fault.holdMs} ms) the fleet did not converge in ${FLEET_CONVERGE_MS} ms`,
      );
    else figures.convergeMs[fault.kind].push(took);
  }
  await stream;
  await poller;

  figures.endsMs = await awaitEnds(fleet, jobs, (o.convergeSeconds ?? 90) * 1000);
  violations.push(...(await checkJobs(fleet, jobs, windows, { leaseSeconds: lease, stopGraceSeconds: STOP_GRACE_SECONDS })));
  const uptimeOffsetMs = Date.now() - Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000;
  const overlaps = checkRealOverlaps(tickDir, jobs, { windows, uptimeOffsetMs, stopGraceSeconds: STOP_GRACE_SECONDS });
  violations.push(...overlaps.violations);
  figures.realOverlapMs = overlaps.maxMs;
  violations.push(...(await checkLeftovers(fleet, 30_000)));
  figures.jobs = jobs.length;
  for (const tj of jobs) {
    const state = tj.last?.state ?? 'unknown';
    figures.byState[state] = (figures.byState[state] ?? 0) + 1;
    figures.attempts += tj.last ? Math.max(tj.last.attempts.length, tj.last.startedAt ? tj.last.attempt : 0) : 0;
    if (tj.cancels.some((c) => !isTerminal(c.stateInAnswer))) figures.cancels++;
    for (const a of tj.last?.attempts ?? [])
      if (a.retried) figures.retriedBy[a.cause ?? 'none'] = (figures.retriedBy[a.cause ?? 'none'] ?? 0) + 1;
  }
  return figures;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The figures of one seed, as a few lines of text. */
export function formatFigures(f: Figures): string {
  const faults = FAULT_KINDS.map((k) => `${k} ${f.faults[k]}`).join(', ');
  const converge = FAULT_KINDS.filter((k) => f.convergeMs[k].length)
    .map((k) => `${k} median ${median(f.convergeMs[k])} ms, max ${Math.max(...f.convergeMs[k])} ms`)
    .join('; ');
  const counts = (r: Record<string, number>) =>
    Object.entries(r)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
  return [
    `seed ${f.seed}: faults ${faults}`,
    `  jobs ${f.jobs} (${counts(f.byState)}), attempts ${f.attempts} (retried after ${counts(f.retriedBy) || 'none'}), ${f.cancels} cancelled while open, all ended ${f.endsMs === null ? 'NOT within the bound' : `${f.endsMs} ms`} after the last heal`,
    `  fleet up again after a heal: ${converge || 'no fault injected'}`,
    `  longest real overlap of two attempts of one job: ${f.realOverlapMs} ms`,
    `  invariant violations: ${f.violations.length}${f.violations.map((v) => `\n    ${v}`).join('')}`,
  ].join('\n');
}
