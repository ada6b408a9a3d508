import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Statement } from 'better-sqlite3';
import type { AuditDetail, AuditOutcome, AuditRecord, NewAuditRecord } from '../../model/audit.js';
import type { AuditFilter, AuditStore } from '../store.js';
import type { Db } from './db.js';
import { writing } from './errors.js';

interface AuditRow {
  seq: number;
  at: string;
  node: string;
  actor: string | null;
  action: string;
  target: string | null;
  outcome: AuditOutcome;
  status: number | null;
  problem_type: string | null;
  request_id: string | null;
  client_request_id: string | null;
  detail: string;
}

function toRecord(row: AuditRow): AuditRecord {
  return Object.freeze({
    seq: row.seq,
    at: row.at,
    node: row.node,
    actor: row.actor,
    action: row.action,
    target: row.target,
    outcome: row.outcome,
    status: row.status,
    problemType: row.problem_type,
    requestId: row.request_id,
    clientRequestId: row.client_request_id,
    detail: Object.freeze(JSON.parse(row.detail) as AuditDetail),
  });
}

/**
 * Rows one retention statement deletes: each DELETE holds the file's write
 * lock, so a sweep of a long trail is many short ones, with other writes
 * let in between.
 */
const DELETE_BATCH = 1000;

/** The audit trail in SQLite; `at` is this process's clock, as ISO-8601 text like every other time in the file. */
export class SqliteAuditStore implements AuditStore {
  private readonly appendStmt: Statement;
  private readonly deleteStmt: Statement;

  constructor(private readonly db: Db) {
    this.appendStmt = db.prepare(
      `INSERT INTO audit (at, node, actor, action, target, outcome, status, problem_type, request_id, client_request_id, detail)
       VALUES (@at, @node, @actor, @action, @target, @outcome, @status, @problemType, @requestId, @clientRequestId, @detail)`,
    );
    this.deleteStmt = db.prepare(`DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE at < ? LIMIT ${DELETE_BATCH})`);
  }

  async append(r: NewAuditRecord): Promise<void> {
    writing(() =>
      this.appendStmt.run({
        at: new Date().toISOString(),
        node: r.node,
        actor: r.actor,
        action: r.action,
        target: r.target,
        outcome: r.outcome,
        status: r.status,
        problemType: r.problemType,
        requestId: r.requestId,
        clientRequestId: r.clientRequestId,
        detail: JSON.stringify(r.detail),
      }),
    );
  }

  async list(f: AuditFilter): Promise<AuditRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (condition: string, value: unknown) => {
      if (value === undefined) return;
      where.push(condition);
      params.push(value);
    };
    add('actor = ?', f.actor);
    add('action = ?', f.action);
    add('target = ?', f.target);
    add('outcome = ?', f.outcome);
    add('at >= ?', f.from);
    add('at < ?', f.to);
    add('seq < ?', f.beforeSeq);
    const sql = `SELECT * FROM audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...params, f.limit) as AuditRow[]).map(toRecord);
  }

  /** By this process's clock, the one every `at` in the file was written by. */
  async deleteOlderThan(days: number): Promise<number> {
    const cutoffIso = new Date(Date.now() - days * 86_400_000).toISOString();
    let deleted = 0;
    for (;;) {
      const { changes } = writing(() => this.deleteStmt.run(cutoffIso));
      deleted += changes;
      if (changes < DELETE_BATCH) return deleted;
      await nextTurn();
    }
  }
}
