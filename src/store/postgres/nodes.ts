import type pg from 'pg';
import type { NodeGpu, NodeState } from '../../model/node.js';
import { ACTIVE_SQL, JOB_COLUMNS, type JobRow, toRecord } from '../job-row.js';
import type { ExpiryCheck, JobPatch, JobRecord, NodeGauge, NodeInfo, NodeRecord, NodeStore, Renewal, SettledJob } from '../store.js';
import { CHANNEL, read, transaction, write } from './db.js';
import { updateQuery } from './jobs.js';
import type { LeaseLink } from './lease-link.js';
import type { RecordCache } from './record-cache.js';

interface NodeRow {
  name: string;
  labels: Record<string, string>;
  gpus: NodeGpu[];
  version: string;
  lease_seconds: number;
  epoch: number;
  state: NodeState;
  drained: boolean;
  started_at: Date;
  heartbeat_at: Date;
  heartbeat_age: number;
}

/** Every column of `nodes`, and the heartbeat's age by the database's clock. */
const NODE_COLUMNS =
  'name, labels, gpus, version, lease_seconds, epoch, state, drained, started_at, heartbeat_at, ' +
  'extract(epoch from now() - heartbeat_at)::float8 AS heartbeat_age';
const NODES_CHANGED = (origin: string) => `pg_notify('${CHANNEL}', json_build_object('o', ${origin}::text, 'k', 'nodes')::text)`;

function toNode(r: NodeRow): NodeRecord {
  return Object.freeze({
    name: r.name,
    labels: Object.freeze(r.labels),
    gpus: Object.freeze(r.gpus.map((g) => Object.freeze(g))),
    version: r.version,
    leaseSeconds: r.lease_seconds,
    epoch: r.epoch,
    state: r.state,
    drained: r.drained,
    startedAt: r.started_at.toISOString(),
    heartbeatAt: r.heartbeat_at.toISOString(),
    heartbeatAgeSeconds: Math.max(0, r.heartbeat_age),
  });
}

// A new process of a node: the next epoch (the old process's writes are
// refused from now on), up, the lease renewed; `drained` is the operator's
// and survives.
const REGISTER = `
  WITH n AS (
    INSERT INTO nodes (name, labels, gpus, version, lease_seconds, epoch, state, drained, started_at, heartbeat_at)
    VALUES ($1, $2::jsonb, $3::jsonb, $4, $5, 1, 'up', false, now(), now())
    ON CONFLICT (name) DO UPDATE SET labels = excluded.labels, gpus = excluded.gpus, version = excluded.version,
      lease_seconds = excluded.lease_seconds, epoch = nodes.epoch + 1, state = 'up', started_at = now(), heartbeat_at = now()
    RETURNING *
  )
  SELECT ${NODE_COLUMNS}, ${NODES_CHANGED('$6')} FROM n`;
// Waits for an `expire` holding the row (within the renewal's deadline), then finds the node lost.
// The check for lapsed leases reads the few rows of `nodes` in the
// renewal's snapshot: a lease that runs out after it is seen next beat.
const RENEW = `
  WITH r AS (UPDATE nodes SET heartbeat_at = now() WHERE name = $1 AND epoch = $2 AND state = 'up' RETURNING drained)
  SELECT r.drained, EXISTS (
    SELECT 1 FROM nodes WHERE state = 'up' AND name <> $1 AND heartbeat_at + lease_seconds * interval '1 second' < now()
  ) AS "othersDue" FROM r`;
const GET = `SELECT ${NODE_COLUMNS} FROM nodes WHERE name = $1`;
const LIST = `SELECT ${NODE_COLUMNS} FROM nodes ORDER BY name`;
// Counts computed here, not rows sent: every node of a fleet is scraped,
// so each scrape interval reads every node's gauges N times.
const GAUGES = `
  WITH active AS MATERIALIZED (SELECT node, gpus FROM jobs WHERE node IS NOT NULL AND state IN ${ACTIVE_SQL}),
  running AS (SELECT node, count(*)::int AS n FROM active GROUP BY node),
  held AS (SELECT DISTINCT a.node, c.uuid FROM active a, jsonb_array_elements_text(a.gpus::jsonb) AS c (uuid)),
  allocated AS (
    SELECT n.name, count(*)::int AS n FROM nodes n, jsonb_array_elements(n.gpus) AS g, held h
    WHERE h.node = n.name AND h.uuid = g->>'uuid' GROUP BY n.name
  )
  SELECT n.name, n.state, n.drained, extract(epoch from now() - n.heartbeat_at)::float8 AS "heartbeatAgeSeconds",
    jsonb_array_length(n.gpus) AS gpus, COALESCE(al.n, 0) AS "gpusAllocated", COALESCE(r.n, 0) AS "runningJobs"
  FROM nodes n LEFT JOIN running r ON r.node = n.name LEFT JOIN allocated al ON al.name = n.name
  ORDER BY n.name`;
const SET_DRAINED = `
  WITH n AS (UPDATE nodes SET drained = $2 WHERE name = $1 RETURNING *)
  SELECT ${NODE_COLUMNS}, ${NODES_CHANGED('$3')} FROM n`;
// The nodes whose leases ran out, locked without waiting: a row another
// transaction holds (a renewal in flight, another node's expiry, anything
// stuck) is left for a later beat, so no lock anywhere can hold up the
// expiry of the other nodes. A node another expiry declared lost meanwhile
// no longer matches once its row is locked.
const DUE_NODES = `
  SELECT ${NODE_COLUMNS} FROM nodes
  WHERE state = 'up' AND heartbeat_at + lease_seconds * interval '1 second' < now()
  ORDER BY name
  FOR UPDATE SKIP LOCKED`;
const OTHERS_UP = `SELECT count(*)::int AS n FROM nodes WHERE state = 'up' AND name <> $1`;
const MARK_LOST = `
  WITH n AS (UPDATE nodes SET state = 'lost' WHERE name = ANY($1::text[]) RETURNING *)
  SELECT ${NODE_COLUMNS} FROM n ORDER BY name`;
// Every unfinished job of the lost nodes is settled with them, so these rows
// are waited for (lock_timeout bounds the wait; the expiry is tried again).
const UNFINISHED_JOBS = `
  SELECT ${JOB_COLUMNS} FROM jobs
  WHERE node = ANY($1::text[]) AND state IN ('queued', 'pulling', 'starting', 'running')
  ORDER BY seq
  FOR UPDATE`;

/** The registry of nodes sharing the database; every time in it is the database's clock (`now()`). */
export class PgNodeStore implements NodeStore {
  constructor(
    private readonly pool: pg.Pool,
    /** This node's name, the origin of the changes it announces. */
    private readonly origin: string,
    /** The connection renewals go through, apart from the pool. */
    private readonly lease: LeaseLink,
    private readonly cache: RecordCache,
  ) {}

  async register(info: NodeInfo): Promise<NodeRecord> {
    const [row] = await write<NodeRow>(this.pool, {
      name: 'gantry_node_register',
      text: REGISTER,
      values: [info.name, JSON.stringify(info.labels), JSON.stringify(info.gpus), info.version, info.leaseSeconds, this.origin],
    });
    if (!row) throw new Error(`node ${info.name} was not registered`);
    return toNode(row);
  }

  async renew(name: string, epoch: number): Promise<Renewal | null> {
    const [row] = await this.lease.query<Renewal>({ name: 'gantry_node_renew', text: RENEW, values: [name, epoch] });
    return row ? { drained: row.drained, othersDue: row.othersDue } : null;
  }

  async get(name: string): Promise<NodeRecord | undefined> {
    const [row] = await read<NodeRow>(this.pool, { name: 'gantry_node_get', text: GET, values: [name] });
    return row && toNode(row);
  }

  async list(): Promise<NodeRecord[]> {
    return (await read<NodeRow>(this.pool, { name: 'gantry_node_list', text: LIST })).map(toNode);
  }

  async gauges(): Promise<NodeGauge[]> {
    const rows = await read<NodeGauge>(this.pool, { name: 'gantry_node_gauges', text: GAUGES });
    return rows.map((r) => Object.freeze({ ...r, heartbeatAgeSeconds: Math.max(0, r.heartbeatAgeSeconds) }));
  }

  async setDrained(name: string, drained: boolean): Promise<NodeRecord | undefined> {
    const [row] = await write<NodeRow>(this.pool, {
      name: 'gantry_node_set_drained',
      text: SET_DRAINED,
      values: [name, drained, this.origin],
    });
    return row && toNode(row);
  }

  async expire(
    settle: (record: JobRecord, node: NodeRecord) => JobPatch,
    check?: ExpiryCheck,
  ): Promise<{ lost: NodeRecord[]; settled: SettledJob[] }> {
    // The settled jobs' records are dropped once the transaction is over, as
    // any write of a job drops it (jobs.ts, `one`): a read here after expire
    // sees the settlement, not a record kept before it.
    const touched: string[] = [];
    try {
      return await this.settleLost(settle, check, touched);
    } finally {
      for (const id of touched) this.cache.drop(id);
    }
  }

  private settleLost(
    settle: (record: JobRecord, node: NodeRecord) => JobPatch,
    check: ExpiryCheck | undefined,
    touched: string[],
  ): Promise<{ lost: NodeRecord[]; settled: SettledJob[] }> {
    return transaction(this.pool, async (c) => {
      const due = (await c.query<NodeRow>({ name: 'gantry_nodes_due', text: DUE_NODES })).rows.map(toNode);
      if (due.length === 0) return { lost: [], settled: [] };
      if (check) {
        const [up] = (await c.query<{ n: number }>({ name: 'gantry_nodes_others_up', text: OTHERS_UP, values: [this.origin] })).rows;
        if (!check(due, up?.n ?? 0)) return { lost: [], settled: [] };
      }
      const marked = await c.query<NodeRow>({ name: 'gantry_nodes_mark_lost', text: MARK_LOST, values: [due.map((n) => n.name)] });
      const lost = marked.rows.map(toNode);
      const settled: SettledJob[] = [];
      const byName = new Map(lost.map((n) => [n.name, n]));
      const jobs = await c.query<JobRow>({ name: 'gantry_nodes_unfinished_jobs', text: UNFINISHED_JOBS, values: [[...byName.keys()]] });
      for (const job of jobs.rows.map(toRecord)) {
        // Claimed but not started: back to the queue as it was, for any node.
        const patch: JobPatch = job.state === 'queued' ? { node: null } : settle(job, byName.get(job.node!)!);
        touched.push(job.id);
        const [row] = (await c.query<JobRow>(updateQuery(this.origin, job.id, patch))).rows;
        if (row) settled.push({ record: toRecord(row), requeued: (patch.state ?? job.state) === 'queued' });
      }
      await c.query({ text: `SELECT ${NODES_CHANGED('$1')}`, values: [this.origin] });
      return { lost, settled };
    });
  }
}
