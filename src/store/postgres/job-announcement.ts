import { type JobRow, toRecord } from '../job-row.js';
import type { JobRecord } from '../store.js';
import { CHANNEL } from './db.js';

/**
 * NOTIFY's payload must be shorter than 8000 bytes (PostgreSQL's default
 * build); a longer one fails the statement, and with it the write.
 */
const PAYLOAD_MAX_BYTES = 7999;

/** A job change as a write announces it (small keys), with the row when it fits. */
export interface JobPayload {
  o: string;
  k: 'job';
  j: string;
  s: JobRecord['state'];
  n: string | null;
  c: boolean;
  /** The writing transaction's id (a relayed feed's handover tells the changes it heard already by it). */
  x?: string;
  r?: JobRow;
}

/**
 * The end of a statement that wrote jobs (the rows of CTE `cte`): returns
 * them, each with an announcement to the other nodes, sent with the
 * statement's transaction, so only once it commits. `origin` is the
 * placeholder of this node's name.
 *
 * The announcement carries the job's whole row whenever the payload fits,
 * so a node follows another's change (its queue, its record cache, a live
 * follower) without reading the job back, as a Kubernetes watch carries the
 * object: the reads would otherwise grow with the number of nodes, each
 * reading every change. A row too big to carry (a large spec, result or
 * attempt history) is announced by its id, state and node alone, and read
 * by the nodes that need it.
 */
export function returningAnnounced(cte: string, origin: string): string {
  const head = `'o', ${origin}::text, 'k', 'job', 'j', ${cte}.id, 's', ${cte}.state, 'n', ${cte}.node, 'c', ${cte}.cancel_requested, 'x', pg_current_xact_id()::text`;
  return (
    `SELECT ${cte}.*, pg_notify('${CHANNEL}', CASE WHEN octet_length(announced.whole) <= ${PAYLOAD_MAX_BYTES} ` +
    `THEN announced.whole ELSE json_build_object(${head})::text END) AS notified ` +
    `FROM ${cte}, LATERAL (SELECT json_build_object(${head}, 'r', row_to_json(${cte}))::text AS whole) announced`
  );
}

/** The record an announcement carries, or null (none carried, or one this node cannot read). */
export function carriedRecord(p: JobPayload): JobRecord | null {
  if (typeof p.r !== 'object' || p.r === null || p.r.id !== p.j) return null;
  try {
    return toRecord(p.r);
  } catch {
    return null;
  }
}
