import type pg from 'pg';
import type { AuditDetail, AuditOutcome, AuditRecord, NewAuditRecord } from '../../model/audit.js';
import type { AuditFilter, AuditStore } from '../store.js';
import { pgText, read, write } from './db.js';

interface AuditRow {
  seq: number;
  at: Date;
  node: string;
  actor: string | null;
  action: string;
  target: string | null;
  outcome: AuditOutcome;
  status: number | null;
  problem_type: string | null;
  request_id: string | null;
  client_request_id: string | null;
  detail: AuditDetail;
}

const COLUMNS = 'seq, at, node, actor, action, target, outcome, status, problem_type, request_id, client_request_id, detail';

// Milliseconds, the precision a record shows (`toISOString`), so that a
// record's `at` is also what the `from` and `to` filters compare.
const APPEND = `
  INSERT INTO audit (at, node, actor, action, target, outcome, status, problem_type, request_id, client_request_id, detail)
  VALUES (date_trunc('milliseconds', now()), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)`;
const DELETE_OLDER = `WITH d AS (DELETE FROM audit WHERE at < now() - make_interval(days => $1) RETURNING 1) SELECT count(*)::int AS n FROM d`;

function toRecord(r: AuditRow): AuditRecord {
  return Object.freeze({
    seq: r.seq,
    at: r.at.toISOString(),
    node: r.node,
    actor: r.actor,
    action: r.action,
    target: r.target,
    outcome: r.outcome,
    status: r.status,
    problemType: r.problem_type,
    requestId: r.request_id,
    clientRequestId: r.client_request_id,
    detail: Object.freeze(r.detail),
  });
}

/** The fleet's one audit trail: every node appends to it, and its times are the database's clock. */
export class PgAuditStore implements AuditStore {
  constructor(private readonly pool: pg.Pool) {}

  async append(r: NewAuditRecord): Promise<void> {
    // A target comes from the request's path, where %00 decodes to a NUL that PostgreSQL text and jsonb refuse.
    const detail = JSON.stringify(r.detail, (_key, value: unknown) => (typeof value === 'string' ? pgText(value) : value));
    await write(this.pool, {
      name: 'gantry_audit_append',
      text: APPEND,
      values: [
        r.node,
        pgText(r.actor),
        r.action,
        pgText(r.target),
        r.outcome,
        r.status,
        r.problemType,
        r.requestId,
        r.clientRequestId,
        detail,
      ],
    });
  }

  async list(f: AuditFilter): Promise<AuditRecord[]> {
    const where: string[] = [];
    const values: unknown[] = [];
    const add = (condition: (param: string) => string, value: unknown) => {
      if (value === undefined) return;
      values.push(typeof value === 'string' ? pgText(value) : value);
      where.push(condition(`$${values.length}`));
    };
    add((p) => `actor = ${p}`, f.actor);
    add((p) => `action = ${p}`, f.action);
    add((p) => `target = ${p}`, f.target);
    add((p) => `outcome = ${p}`, f.outcome);
    add((p) => `at >= ${p}::timestamptz`, f.from);
    add((p) => `at < ${p}::timestamptz`, f.to);
    add((p) => `seq < ${p}`, f.beforeSeq);
    values.push(f.limit);
    const text = `SELECT ${COLUMNS} FROM audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT $${values.length}`;
    return (await read<AuditRow>(this.pool, { text, values })).map(toRecord);
  }

  async deleteOlderThan(days: number): Promise<number> {
    const [row] = await write<{ n: number }>(this.pool, { name: 'gantry_audit_delete_older', text: DELETE_OLDER, values: [days] });
    return row?.n ?? 0;
  }
}
