/**
 * What a simulation reads of PostgreSQL itself, on connections of a role of
 * its own (`sim_observer`), so that none of its statements counts as the
 * fleet's: pg_stat_statements per statement, pg_stat_database and the jobs
 * table's counters, the notifications on Gantry's channel, the connections
 * the fleet holds, and the bulk loads of queued and finished jobs.
 */
import pg from 'pg';
import { CHANNEL } from '../../src/store/postgres/db.js';

export const OBSERVER = 'sim_observer';

/** The URL of `url`'s database as the observer role. */
export function observerUrl(url: string): string {
  const u = new URL(url);
  u.username = OBSERVER;
  return u.toString();
}

export async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: 'sim-observer' });
  await c.connect();
  return c;
}

export interface StatementTotals {
  calls: number;
  ms: number;
  rows: number;
  query: string;
}

export interface DbCounters {
  /** pg_stat_statements of the fleet's role in this database, by queryid. */
  statements: Map<string, StatementTotals>;
  /** pg_stat_database of this database. */
  db: Record<string, number>;
  /** pg_stat_user_tables of `jobs`. */
  jobs: Record<string, number>;
}

/** The cumulative counters now (subtract two with `diffCounters`). */
export async function readCounters(obs: pg.Client): Promise<DbCounters> {
  const st = await obs.query<{ queryid: string; calls: string; ms: number; rows: string; query: string }>(
    `SELECT queryid::text, calls, total_exec_time AS ms, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 140) AS query
       FROM pg_stat_statements
      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND userid <> (SELECT oid FROM pg_roles WHERE rolname = $1)`,
    [OBSERVER],
  );
  const statements = new Map<string, StatementTotals>();
  for (const r of st.rows) statements.set(r.queryid, { calls: Number(r.calls), ms: r.ms, rows: Number(r.rows), query: r.query });
  const db = await obs.query(
    `SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted, blks_read, blks_hit, sessions
       FROM pg_stat_database WHERE datname = current_database()`,
  );
  const jobs = await obs.query(
    `SELECT seq_scan, seq_tup_read, coalesce(idx_scan, 0) AS idx_scan, coalesce(idx_tup_fetch, 0) AS idx_tup_fetch,
            n_tup_ins, n_tup_upd, n_tup_hot_upd, n_live_tup, n_dead_tup
       FROM pg_stat_user_tables WHERE relname = 'jobs'`,
  );
  const nums = (row: Record<string, unknown> | undefined) =>
    Object.fromEntries(Object.entries(row ?? {}).map(([k, v]) => [k, Number(v)])) as Record<string, number>;
  return { statements, db: nums(db.rows[0]), jobs: nums(jobs.rows[0]) };
}

export interface CounterDiff {
  statements: number;
  statementMs: number;
  statementRows: number;
  /** The statements that ran most often in between, with their share of the calls. */
  top: { calls: number; ms: number; rows: number; query: string }[];
  db: Record<string, number>;
  jobs: Record<string, number>;
}

export function diffCounters(a: DbCounters, b: DbCounters, topN = 12): CounterDiff {
  const per: CounterDiff['top'] = [];
  for (const [id, s] of b.statements) {
    const before = a.statements.get(id);
    const calls = s.calls - (before?.calls ?? 0);
    if (calls > 0) per.push({ calls, ms: s.ms - (before?.ms ?? 0), rows: s.rows - (before?.rows ?? 0), query: s.query });
  }
  const minus = (x: Record<string, number>, y: Record<string, number>) =>
    Object.fromEntries(Object.entries(y).map(([k, v]) => [k, v - (x[k] ?? 0)])) as Record<string, number>;
  per.sort((p, q) => q.calls - p.calls);
  return {
    statements: per.reduce((n, s) => n + s.calls, 0),
    statementMs: per.reduce((n, s) => n + s.ms, 0),
    statementRows: per.reduce((n, s) => n + s.rows, 0),
    top: per.slice(0, topN).map((s) => ({ ...s, ms: Math.round(s.ms * 10) / 10 })),
    db: minus(a.db, b.db),
    jobs: minus(a.jobs, b.jobs),
  };
}

/** Counts the notifications on Gantry's channel (each one sent is delivered to every listener, this one included). */
export class NotificationCounter {
  total = 0;
  readonly byKind = new Map<string, number>();
  private constructor(private readonly client: pg.Client) {}

  static async start(url: string): Promise<NotificationCounter> {
    const c = await connect(url);
    const counter = new NotificationCounter(c);
    c.on('notification', (msg) => {
      if (msg.channel !== CHANNEL) return;
      counter.total++;
      let kind = 'other';
      try {
        const k = (JSON.parse(msg.payload ?? '') as { k?: unknown }).k;
        if (typeof k === 'string') kind = k;
      } catch {
        // not JSON: counted as other
      }
      counter.byKind.set(kind, (counter.byKind.get(kind) ?? 0) + 1);
    });
    await c.query(`LISTEN ${CHANNEL}`);
    return counter;
  }

  snapshot(): { total: number; byKind: Record<string, number> } {
    return { total: this.total, byKind: Object.fromEntries(this.byKind) };
  }

  async stop(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }
}

export interface ConnectionSample {
  total: number;
  active: number;
  idle: number;
  idleInTransaction: number;
  listening: number;
}

/** The fleet's connections to this database now (the observer's own left out). */
export async function connections(obs: pg.Client): Promise<ConnectionSample> {
  const { rows } = await obs.query<Record<string, string>>(
    `SELECT count(*) AS total,
            count(*) FILTER (WHERE state = 'active') AS active,
            count(*) FILTER (WHERE state = 'idle') AS idle,
            count(*) FILTER (WHERE state LIKE 'idle in transaction%') AS idle_in_transaction,
            count(*) FILTER (WHERE application_name LIKE 'gantry:%:feed') AS listening
       FROM pg_stat_activity WHERE datname = current_database() AND usename <> $1 AND backend_type = 'client backend'`,
    [OBSERVER],
  );
  const r = rows[0]!;
  return {
    total: Number(r.total),
    active: Number(r.active),
    idle: Number(r.idle),
    idleInTransaction: Number(r.idle_in_transaction),
    listening: Number(r.listening),
  };
}

/** The jobs table's columns, in order. */
async function jobColumns(obs: pg.Client): Promise<string[]> {
  const { rows } = await obs.query<{ column_name: string }>(
    `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'jobs' ORDER BY ordinal_position`,
  );
  return rows.map((r) => r.column_name);
}

/** An ISO time as Gantry writes them (Date.toISOString), from a timestamptz expression. */
const iso = (ts: string) => `to_char((${ts}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/**
 * Inserts `count` copies of the job row `templateId` with one SQL statement
 * (generate_series), each with a new id and times: queued copies created
 * just before now in order, finished ones spread evenly over the last
 * `spreadDays` days (started a second and finished a minute after their
 * creation). Every other column is the template's, whatever columns the
 * schema has, so a copy reads back as the template would.
 */
export async function cloneJob(
  obs: pg.Client,
  templateId: string,
  count: number,
  o: { finished: boolean; spreadDays: number },
): Promise<void> {
  const cols = (await jobColumns(obs)).filter((c) => c !== 'seq');
  const created = o.finished
    ? `now() - (g::float8 / ${count}) * interval '${o.spreadDays} days'`
    : `now() - interval '1 hour' + g * interval '1 millisecond'`;
  const expr: Record<string, string> = {
    id: 'gen_random_uuid()::text',
    idempotency_key: 'NULL',
    request_id: 'NULL',
    created_at: iso(created),
    started_at: `CASE WHEN t.started_at IS NULL THEN NULL ELSE ${iso(`${created} + interval '1 second'`)} END`,
    finished_at: `CASE WHEN t.finished_at IS NULL THEN NULL ELSE ${iso(`${created} + interval '1 minute'`)} END`,
  };
  const select = cols.map((c) => expr[c] ?? `t.${c}`).join(', ');
  await obs.query(
    `INSERT INTO jobs (${cols.join(', ')})
     SELECT ${select} FROM jobs t CROSS JOIN generate_series(1, ${count}) AS g WHERE t.id = $1 ORDER BY g`,
    [templateId],
  );
}
