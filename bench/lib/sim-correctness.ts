/**
 * What the fleet's decisions are worth, measured on a simulated fleet (one
 * GPU per node): how far a team's GPU quota is overshot when every node
 * decides for itself, and how many preemptions a waiting job causes beyond
 * the one it needs. Both read the jobs' records in PostgreSQL (through the
 * observer's connection), so they hold for any version of the code that
 * keeps the jobs table.
 */
import type pg from 'pg';
import { TERMINAL_STATES } from '../../src/model/states.js';
import { jobSpec, submit } from './client.js';
import { BENCH_TOKEN } from './gantry.js';
import { SIM_HOLD, SIM_JOB, SIM_TEAM_TOKEN } from './sim-node.js';
import { sleep } from './util.js';

const TERMINAL = [...TERMINAL_STATES];

/** Waits until `sql` counts zero jobs or `ms` has passed; the count left (0: all there). */
async function waitNone(obs: pg.Client, sql: string, params: unknown[], ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  for (;;) {
    const { rows } = await obs.query<{ n: string }>(sql, params);
    const left = Number(rows[0]!.n);
    if (left === 0 || Date.now() > deadline) return left;
    await sleep(100);
  }
}

const waitEnded = (obs: pg.Client, ids: string[], ms: number) =>
  waitNone(obs, 'SELECT count(*) AS n FROM jobs WHERE id = ANY($1) AND NOT (state = ANY($2))', [ids, TERMINAL], ms);
const waitRunning = (obs: pg.Client, ids: string[], ms: number) =>
  waitNone(obs, `SELECT count(*) AS n FROM jobs WHERE id = ANY($1) AND state <> 'running'`, [ids], ms);

/** How the jobs of `ids` that are not running stand: state and reason, with how many of each. */
async function notRunning(obs: pg.Client, ids: string[]): Promise<{ state: string; reason: string | null; n: number }[]> {
  const { rows } = await obs.query<{ state: string; reason: string | null; n: string }>(
    `SELECT state, left(reason, 120) AS reason, count(*) AS n FROM jobs WHERE id = ANY($1) AND state <> 'running' GROUP BY 1, 2 ORDER BY 3 DESC`,
    [ids],
  );
  return rows.map((r) => ({ state: r.state, reason: r.reason, n: Number(r.n) }));
}

/** How long a check waits for the fleet to settle before it records what is stuck and goes on. */
const SETTLE_MS = 30_000;

/** The most intervals open at once ([start, end) in ms; an end at the same instant as a start comes first). */
export function maxOverlap(spans: { start: number; end: number }[]): number {
  const edges = spans.flatMap((s) => [
    { t: s.start, d: 1 },
    { t: s.end, d: -1 },
  ]);
  edges.sort((a, b) => a.t - b.t || a.d - b.d);
  let open = 0;
  let most = 0;
  for (const e of edges) {
    open += e.d;
    most = Math.max(most, open);
  }
  return most;
}

export interface QuotaResult {
  teamGpus: number;
  jobs: number;
  /** The most of the team's one-GPU jobs running at once (container start to end). */
  maxHeld: number;
  overshoot: number;
  /** The team's jobs still not ended when the check gave up waiting (0: all ended). */
  unfinished: number;
}

/**
 * Submits `jobs` short one-GPU jobs of the capped team at once, round robin
 * over the nodes, and waits for all of them to end; then reads when each
 * ran. The team may hold `teamGpus`; the fleet has a GPU per node.
 */
export async function quotaOvershoot(obs: pg.Client, urls: string[], teamGpus: number, jobs: number): Promise<QuotaResult> {
  const spec = { ...jobSpec([SIM_JOB, '3', '100']), gpus: { count: 1 } };
  const ids = await Promise.all(
    Array.from({ length: jobs }, async (_, i) => (await submit(urls[i % urls.length]!, SIM_TEAM_TOKEN, spec)).id),
  );
  const unfinished = await waitEnded(obs, ids, 2 * SETTLE_MS);
  const { rows } = await obs.query<{ started_at: string | null; finished_at: string | null }>(
    'SELECT started_at, finished_at FROM jobs WHERE id = ANY($1)',
    [ids],
  );
  const spans = rows
    .filter((r) => r.started_at && r.finished_at)
    .map((r) => ({ start: Date.parse(r.started_at!), end: Date.parse(r.finished_at!) }));
  const maxHeld = maxOverlap(spans);
  return { teamGpus, jobs, maxHeld, overshoot: Math.max(0, maxHeld - teamGpus), unfinished };
}

export interface PreemptionResult {
  /** Waiting jobs, one at a time, each needing one GPU of a fleet whose every GPU runs a preemptible job. */
  rounds: number;
  preemptions: number;
  /** Preemptions beyond the one each waiting job needs. */
  duplicates: number;
  /** The preemptible jobs not running again 30 s after a round's waiting job ended (the rounds stop there), by state and reason. */
  stuck: { state: string; reason: string | null; n: number }[];
}

/**
 * Fills every node's GPU with a preemptible low-priority job that runs
 * until stopped, then, `rounds` times, submits one short high-priority GPU
 * job and waits until it has ended and every preempted job runs again
 * (when they do not within 30 s, it records how they stand and stops).
 * Counts the preempted attempts in the low-priority jobs' records.
 */
export async function duplicatePreemptions(obs: pg.Client, urls: string[], wanted: number): Promise<PreemptionResult> {
  const hold = { ...jobSpec([SIM_HOLD]), gpus: { count: 1 }, preemptible: true, priority: -10 };
  const holds = await Promise.all(urls.map(async (u) => (await submit(u, BENCH_TOKEN, hold)).id));
  let stuck = (await waitRunning(obs, holds, 5 * SETTLE_MS)) ? await notRunning(obs, holds) : [];
  const urgent = { ...jobSpec([SIM_JOB, '3', '100']), gpus: { count: 1 }, priority: 10 };
  let rounds = 0;
  while (rounds < wanted && stuck.length === 0) {
    const id = (await submit(urls[rounds % urls.length]!, BENCH_TOKEN, urgent)).id;
    rounds++;
    await waitEnded(obs, [id], 5 * SETTLE_MS);
    if (await waitRunning(obs, holds, SETTLE_MS)) stuck = await notRunning(obs, holds);
  }
  const { rows } = await obs.query<{ n: string }>(
    `SELECT count(*) AS n FROM jobs j CROSS JOIN LATERAL json_array_elements(j.attempts::json) a
      WHERE j.id = ANY($1) AND a->>'cause' = 'preempted'`,
    [holds],
  );
  const preemptions = Number(rows[0]!.n);
  return { rounds, preemptions, duplicates: Math.max(0, preemptions - rounds), stuck };
}
