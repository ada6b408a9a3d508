/** The fleet-scale section's results as a markdown table and as rows of the bench's summary table (bench/run.ts). */
import type { FleetScaleResult } from './fleet-scale.js';

type CellResult = FleetScaleResult['cells'][number];

function table(head: string[], rows: (string | number)[][]): string {
  const line = (cols: (string | number)[]) => `| ${cols.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n');
}

/** The columns that name a cell, and their values. */
const WHERE = ['N', 'queued', 'finished'];
const where = (c: CellResult) => [c.cell.nodes, c.cell.queued, c.cell.finished];
/** Each kind of notification with its count, most first (the kinds are the payload's `k`: whatever the code sends). */
const byKind = (kinds: Record<string, number>) =>
  Object.entries(kinds)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
const pair = (s: { p50: number; p99: number } | null) => (s ? `${s.p50} / ${s.p99}` : '');

/**
 * The results as markdown: the database's cost per job, what clients and
 * an idle fleet see, and (cells on an empty table) the fleet's decisions.
 * The simulation's own overhead is the driver's CPU against all the CPU the
 * simulation used in the window (driver, nodes, PostgreSQL): the machine's
 * busy time also counts whatever else runs on it.
 */
export function fleetScaleMarkdown(r: FleetScaleResult): string {
  const cost = table(
    [
      ...WHERE,
      'jobs',
      'statements / job',
      'notifications / job (by kind)',
      'deliveries / job',
      'commits / job',
      'jobs rows read / pass',
      'passes / job',
      'PG CPU s / 1000 jobs',
      'net of rest: PG CPU s / 1000 jobs, statements / job',
      'cold fleet (warm-up): jobs, PG CPU s / 1000 jobs, statements / job',
      'listening connections',
      'connections (max)',
    ],
    r.cells.map((c) => [
      ...where(c),
      c.jobs,
      c.perJob.statements,
      `${c.perJob.notifications} (${byKind(c.perJob.notificationsByKind)})`,
      c.perJob.notificationDeliveries,
      c.perJob.commits,
      c.jobsRowsReadPerPass,
      c.perJob.passes,
      c.pgCpuSecondsPer1000Jobs,
      `${c.netOfRest.pgCpuSecondsPer1000Jobs}, ${c.netOfRest.statementsPerJob}`,
      `${c.cold.jobs}, ${c.cold.pgCpuSecondsPer1000Jobs}, ${c.cold.statementsPerJob}`,
      c.connections.load.listeningMean,
      c.connections.load.max,
    ]),
  );
  const seen = table(
    [
      ...WHERE,
      'claim p50 / p99 ms',
      'submit p50 / p99 ms',
      'poll p50 / p99 ms',
      'scrape p50 / p99 ms',
      'idle: PG % of a core',
      'idle: each node % of a core',
      'idle: statements / s',
      'driver % of the simulation CPU',
      'load avg',
    ],
    r.cells.map((c) => [
      ...where(c),
      pair(c.claimMs),
      pair(c.submitMs),
      pair(c.pollMs),
      pair(c.scrapeMs),
      c.idle.pgCorePercent,
      c.idle.nodeCorePercentEach,
      c.idle.statementsPerSecond,
      round1((c.cpu.driverSeconds / (c.cpu.driverSeconds + c.cpu.nodesSeconds + c.cpu.pgSeconds)) * 100),
      c.loadavg.join(' → '),
    ]),
  );
  const decided = r.cells.filter((c) => c.decisions);
  const decisions = table(
    [
      'N',
      'team quota (GPUs)',
      'team jobs (not ended)',
      'most held at once',
      'quota overshoot',
      'waiting jobs',
      'preemptions',
      'duplicate preemptions',
      'preempted jobs not running again after 30 s',
    ],
    decided.map((c) => {
      const d = c.decisions!;
      const stuck = d.preemption.stuck.map((s) => `${s.n} ${s.state}${s.reason ? ` (${s.reason})` : ''}`).join('; ');
      return [
        c.cell.nodes,
        d.quota.teamGpus,
        `${d.quota.jobs} (${d.quota.unfinished})`,
        d.quota.maxHeld,
        d.quota.overshoot,
        d.preemption.rounds,
        d.preemption.preemptions,
        d.preemption.duplicates,
        stuck || 0,
      ];
    }),
  );
  return [cost, seen, decided.length ? decisions : ''].filter(Boolean).join('\n\n');
}

const round1 = (n: number) => Math.round(n * 10) / 10;

type RowFn = (
  section: string,
  metric: string,
  gantry: number,
  baseline: number | string,
  target?: { op: '<=' | '>=' | '<'; value: number; on: 'ratio' | 'gantry' },
) => void;

/** The table's rows of this section (run.ts's `row`): the issue's targets, where the cells they compare ran. */
export function fleetScaleRows(r: FleetScaleResult, row: RowFn): void {
  const S = '7 fleet-scale';
  const find = (n: number, q: number, f: number) => r.cells.find((c) => c.cell.nodes === n && c.cell.queued === q && c.cell.finished === f);
  for (const c of r.cells) {
    const at = `N=${c.cell.nodes}, ${c.cell.queued} queued, ${c.cell.finished} finished`;
    row(S, `${at}: statements / notifications per job`, c.perJob.statements, c.perJob.notifications);
    row(S, `${at}: claim p50 / p99 (ms)`, c.claimMs.p50, c.claimMs.p99);
  }
  const ns = [...new Set(r.cells.map((c) => c.cell.nodes))].sort((a, b) => a - b);
  const [lo, hi] = [ns[0], ns.at(-1)];
  const small = lo === undefined ? undefined : find(lo, 0, 0);
  const large = hi === undefined ? undefined : find(hi, 0, 0);
  if (small && large && small !== large) {
    row(S, `PostgreSQL CPU s per 1000 jobs, N=${hi} vs N=${lo}`, large.pgCpuSecondsPer1000Jobs, small.pgCpuSecondsPer1000Jobs, {
      op: '<=',
      value: 1.5,
      on: 'ratio',
    });
    row(S, `statements per job, N=${hi} vs N=${lo}`, large.perJob.statements, small.perJob.statements, {
      op: '<=',
      value: 1.5,
      on: 'ratio',
    });
    row(
      S,
      `PostgreSQL CPU s per 1000 jobs net of the fleet at rest, N=${hi} vs N=${lo}`,
      large.netOfRest.pgCpuSecondsPer1000Jobs,
      small.netOfRest.pgCpuSecondsPer1000Jobs,
      { op: '<=', value: 1.5, on: 'ratio' },
    );
    row(
      S,
      `statements per job net of the fleet at rest, N=${hi} vs N=${lo}`,
      large.netOfRest.statementsPerJob,
      small.netOfRest.statementsPerJob,
      {
        op: '<=',
        value: 1.5,
        on: 'ratio',
      },
    );
    // For reference, no target: each node's first jobs, while its connections prepare their statements and load their caches.
    row(
      S,
      `PostgreSQL CPU s per 1000 jobs of a cold fleet (the warm-up), N=${hi} vs N=${lo}`,
      large.cold.pgCpuSecondsPer1000Jobs,
      small.cold.pgCpuSecondsPer1000Jobs,
    );
  }
  const deep = hi === undefined ? undefined : find(hi, 10_000, 0);
  if (deep) row(S, `claim p99 (ms), N=${hi} with 10000 queued`, deep.claimMs.p99, '', { op: '<', value: 250, on: 'gantry' });
  for (const h of r.cells.filter((c) => c.cell.finished > 0)) {
    const empty = find(h.cell.nodes, 0, 0);
    if (empty) {
      row(S, `submit p50 (ms), N=${h.cell.nodes}, ${h.cell.finished} finished vs none`, h.submitMs.p50, empty.submitMs.p50, {
        op: '<=',
        value: 1.2,
        on: 'ratio',
      });
    }
  }
  if (large) row(S, `idle fleet of ${hi}: PostgreSQL % of one core`, large.idle.pgCorePercent, '', { op: '<', value: 10, on: 'gantry' });
  for (const c of r.cells) {
    if (!c.decisions) continue;
    row(
      S,
      `N=${c.cell.nodes}: quota overshoot (GPUs) / duplicate preemptions`,
      c.decisions.quota.overshoot,
      c.decisions.preemption.duplicates,
    );
  }
}
