import type { Statement } from 'better-sqlite3';
import type { NodeGpu, NodeState } from '../../model/node.js';
import { ACTIVE_SQL } from '../job-row.js';
import type { JobPatch, JobRecord, NodeGauge, NodeInfo, NodeRecord, NodeStore, Renewal, SettledJob } from '../store.js';
import type { Db } from './db.js';
import { writing } from './errors.js';
import type { SqliteJobStore } from './jobs.js';

/**
 * Jobs Gantry 0.1.0 left past the queue have node NULL (see migrations.ts):
 * they ran on the one node a SQLite file has ever had, whatever its name
 * is now, so the node this process is takes them, and its reconcile finds
 * them through `active(name)` and its fenced writes match them. Once taken
 * no job past the queue has node NULL (claim sets it first), so running
 * this again changes nothing. Finished jobs keep NULL.
 */
const ADOPT = `UPDATE jobs SET node = ? WHERE node IS NULL AND state IN ('pulling', 'starting', 'running')`;

/** Gives `node` the unfinished jobs of 0.1.0 (ADOPT); how many. */
export function adoptLegacyJobs(db: Db, node: string): number {
  return db.prepare(ADOPT).run(node).changes;
}

interface NodeRow {
  name: string;
  labels: string;
  gpus: string;
  version: string;
  lease_seconds: number;
  epoch: number;
  state: NodeState;
  drained: number;
  started_at: string;
  heartbeat_at: string;
}

/** A node's gauges: the counts computed in the statement (NodeStore.gauges). */
const GAUGES = `
  WITH active AS (SELECT node, gpus FROM jobs WHERE node IS NOT NULL AND state IN ${ACTIVE_SQL}),
  running AS (SELECT node, COUNT(*) AS n FROM active GROUP BY node),
  held AS (SELECT DISTINCT a.node, c.value AS uuid FROM active a, json_each(a.gpus) AS c),
  allocated AS (
    SELECT n.name, COUNT(*) AS n FROM nodes n, json_each(n.gpus) AS g, held h
    WHERE h.node = n.name AND h.uuid = json_extract(g.value, '$.uuid') GROUP BY n.name
  )
  SELECT n.name, n.state, n.drained, n.heartbeat_at, json_array_length(n.gpus) AS gpus,
    COALESCE(al.n, 0) AS gpus_allocated, COALESCE(r.n, 0) AS running_jobs
  FROM nodes n LEFT JOIN running r ON r.node = n.name LEFT JOIN allocated al ON al.name = n.name
  ORDER BY n.name`;

type GaugeRow = Pick<NodeRow, 'name' | 'state' | 'drained' | 'heartbeat_at'> & {
  gpus: number;
  gpus_allocated: number;
  running_jobs: number;
};

function toNode(row: NodeRow, now: number): NodeRecord {
  return Object.freeze({
    name: row.name,
    labels: Object.freeze(JSON.parse(row.labels) as Record<string, string>),
    gpus: Object.freeze(JSON.parse(row.gpus) as NodeGpu[]),
    version: row.version,
    leaseSeconds: row.lease_seconds,
    epoch: row.epoch,
    state: row.state,
    drained: row.drained === 1,
    startedAt: row.started_at,
    heartbeatAt: row.heartbeat_at,
    heartbeatAgeSeconds: Math.max(0, (now - Date.parse(row.heartbeat_at)) / 1000),
  });
}

/**
 * The node registry in SQLite. A SQLite file is written by one process, so
 * in practice it holds one node, which never expires itself while it runs;
 * the registry still keeps the whole contract (epochs, leases, expiry), so
 * a node's code runs the same on either store. Times are this process's
 * clock, as ISO-8601 text like every other time in the file.
 */
export class SqliteNodeStore implements NodeStore {
  private readonly registerStmt: Statement;
  private readonly adoptStmt: Statement;
  private readonly renewStmt: Statement;
  private readonly othersUpStmt: Statement;
  private readonly getStmt: Statement;
  private readonly listStmt: Statement;
  private readonly gaugesStmt: Statement;
  private readonly upStmt: Statement;
  private readonly drainStmt: Statement;
  private readonly loseStmt: Statement;

  constructor(
    private readonly db: Db,
    private readonly jobs: SqliteJobStore,
  ) {
    this.registerStmt = db.prepare(
      `INSERT INTO nodes (name, labels, gpus, version, lease_seconds, epoch, state, drained, started_at, heartbeat_at)
       VALUES (@name, @labels, @gpus, @version, @leaseSeconds, 1, 'up', 0, @now, @now)
       ON CONFLICT(name) DO UPDATE SET labels = excluded.labels, gpus = excluded.gpus, version = excluded.version,
         lease_seconds = excluded.lease_seconds, epoch = nodes.epoch + 1, state = 'up',
         started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at
       RETURNING *`,
    );
    this.adoptStmt = db.prepare(ADOPT);
    this.renewStmt = db.prepare(`UPDATE nodes SET heartbeat_at = ? WHERE name = ? AND epoch = ? AND state = 'up' RETURNING drained`);
    this.othersUpStmt = db.prepare(`SELECT heartbeat_at, lease_seconds FROM nodes WHERE state = 'up' AND name <> ?`);
    this.getStmt = db.prepare(`SELECT * FROM nodes WHERE name = ?`);
    this.listStmt = db.prepare(`SELECT * FROM nodes ORDER BY name`);
    this.gaugesStmt = db.prepare(GAUGES);
    this.upStmt = db.prepare(`SELECT * FROM nodes WHERE state = 'up' ORDER BY name`);
    this.drainStmt = db.prepare(`UPDATE nodes SET drained = ? WHERE name = ? RETURNING *`);
    this.loseStmt = db.prepare(`UPDATE nodes SET state = 'lost' WHERE name = ? AND epoch = ? AND state = 'up' RETURNING *`);
  }

  /**
   * Also gives the registering node the unfinished jobs of 0.1.0 (ADOPT),
   * unless the store was opened with this node's name and so gave them
   * already.
   */
  async register(info: NodeInfo): Promise<NodeRecord> {
    const now = Date.now();
    const params = {
      name: info.name,
      labels: JSON.stringify(info.labels),
      gpus: JSON.stringify(info.gpus),
      version: info.version,
      leaseSeconds: info.leaseSeconds,
      now: new Date(now).toISOString(),
    };
    const { row, adopted } = writing(() =>
      this.db.transaction(() => ({
        row: this.registerStmt.get(params) as NodeRow,
        adopted: this.adoptStmt.run(info.name).changes,
      }))(),
    );
    if (adopted > 0) this.jobs.forget();
    return toNode(row, now);
  }

  async renew(name: string, epoch: number): Promise<Renewal | null> {
    const now = Date.now();
    const row = writing(() => this.renewStmt.get(new Date(now).toISOString(), name, epoch)) as { drained: number } | undefined;
    if (!row) return null;
    const others = this.othersUpStmt.all(name) as Pick<NodeRow, 'heartbeat_at' | 'lease_seconds'>[];
    return { drained: row.drained === 1, othersDue: others.some((o) => Date.parse(o.heartbeat_at) + o.lease_seconds * 1000 < now) };
  }

  async get(name: string): Promise<NodeRecord | undefined> {
    const row = this.getStmt.get(name) as NodeRow | undefined;
    return row && toNode(row, Date.now());
  }

  async list(): Promise<NodeRecord[]> {
    const now = Date.now();
    return (this.listStmt.all() as NodeRow[]).map((r) => toNode(r, now));
  }

  async gauges(): Promise<NodeGauge[]> {
    const now = Date.now();
    return (this.gaugesStmt.all() as GaugeRow[]).map((r) =>
      Object.freeze({
        name: r.name,
        state: r.state,
        drained: r.drained === 1,
        heartbeatAgeSeconds: Math.max(0, (now - Date.parse(r.heartbeat_at)) / 1000),
        gpus: r.gpus,
        gpusAllocated: r.gpus_allocated,
        runningJobs: r.running_jobs,
      }),
    );
  }

  async setDrained(name: string, drained: boolean): Promise<NodeRecord | undefined> {
    const row = writing(() => this.drainStmt.get(drained ? 1 : 0, name)) as NodeRow | undefined;
    return row && toNode(row, Date.now());
  }

  /**
   * One transaction: each expired node lost, its claimed jobs unclaimed, its
   * running ones settled. `settle` runs inside it (it must not await); if it
   * throws, nothing is changed.
   */
  async expire(settle: (record: JobRecord, node: NodeRecord) => JobPatch): Promise<{ lost: NodeRecord[]; settled: SettledJob[] }> {
    const now = Date.now();
    try {
      return writing(() =>
        this.db.transaction(() => {
          const lost: NodeRecord[] = [];
          const settled: SettledJob[] = [];
          for (const up of this.upStmt.all() as NodeRow[]) {
            if (Date.parse(up.heartbeat_at) + up.lease_seconds * 1000 >= now) continue;
            const row = this.loseStmt.get(up.name, up.epoch) as NodeRow | undefined;
            if (!row) continue;
            const node = toNode(row, now);
            lost.push(node);
            this.jobs.unclaim(node.name);
            for (const record of this.jobs.activeOf(node.name)) {
              const patch = settle(record, node);
              const next = this.jobs.patch(record.id, patch, { state: record.state });
              settled.push({ record: next ?? record, requeued: patch.state === 'queued' });
            }
          }
          return { lost, settled };
        })(),
      );
    } catch (err) {
      // Records cached by the rolled-back writes were never committed.
      this.jobs.forget();
      throw err;
    }
  }
}
