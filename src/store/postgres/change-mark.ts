import type pg from 'pg';
import { JOB_COLUMNS, type JobRow, toRecord } from '../job-row.js';
import type { StoreChange } from '../store.js';

/**
 * Where a node left off in the fleet's changes, so that a reconnecting
 * change feed reads only what it missed rather than the whole queue.
 *
 * Every write of a job stamps the row with its transaction's id
 * (`change_xid`, migrations.ts, CHANGES). A mark is a PostgreSQL snapshot
 * whose transactions the node has surely heard of; the jobs it missed are
 * the rows whose `change_xid` that snapshot does not see. Any such
 * transaction's id is at least the snapshot's xmin, so the read is a range
 * of the jobs_changed index from there, whatever was in flight when the
 * mark was taken.
 */
export const SNAPSHOT = `SELECT pg_current_snapshot()::text AS snapshot`;

// The changed jobs' rows, as an announcement carries them (job-announcement.ts), oldest change first.
const CHANGED = `
  SELECT ${JOB_COLUMNS} FROM jobs
  WHERE change_xid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(change_xid, $1::pg_snapshot)
  ORDER BY change_xid LIMIT $2`;

/** The snapshot a statement on this connection runs in now. */
export async function snapshotNow(client: pg.Client): Promise<string> {
  const { rows } = await client.query<{ snapshot: string }>(SNAPSHOT);
  return rows[0]!.snapshot;
}

// Whether the server's transaction ids are all below the mark's: a database
// restored from a dump under running nodes, whose ids the mark cannot place.
const REWOUND = `SELECT pg_snapshot_xmax(pg_current_snapshot()) < pg_snapshot_xmin($1::pg_snapshot) AS rewound`;

/**
 * The jobs changed by transactions `mark` does not see, as job changes,
 * read in one snapshot, which is returned as the next mark; changes null
 * when more than `max` changed (reading everything again is then no dearer)
 * or when the mark is from another history of the database.
 */
export async function changedSince(client: pg.Client, mark: string, max: number): Promise<{ mark: string; changes: StoreChange[] | null }> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const next = await snapshotNow(client);
    const { rows: history } = await client.query<{ rewound: boolean }>(REWOUND, [mark]);
    if (history[0]?.rewound) return { mark: next, changes: null };
    const { rows } = await client.query<JobRow>(CHANGED, [mark, max + 1]);
    if (rows.length > max) return { mark: next, changes: null };
    const changes: StoreChange[] = rows.map((row) => {
      const record = toRecord(row);
      return { kind: 'job', jobId: record.id, state: record.state, node: record.node, cancelRequested: record.cancelRequested, record };
    });
    return { mark: next, changes };
  } finally {
    await client.query('COMMIT');
  }
}

/**
 * Whether the transaction `xid` is seen by `snapshot` (pg_snapshot's text
 * form, `xmin:xmax:xip,…`), as pg_visible_in_snapshot says: committed before
 * the snapshot was taken.
 */
export function visibleIn(snapshot: string, xid: string): boolean {
  const [xmin, xmax, xip] = snapshot.split(':');
  const x = BigInt(xid);
  if (x < BigInt(xmin!)) return true;
  if (x >= BigInt(xmax!)) return false;
  return !(xip ?? '').split(',').some((inProgress) => inProgress !== '' && BigInt(inProgress) === x);
}
