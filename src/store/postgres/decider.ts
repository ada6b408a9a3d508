import type pg from 'pg';
import type { RelayOffer } from '../change-feed.js';
import type { DeciderStore, FleetDecisions, FleetSnapshot, LeaseTry, NodeAssignments, NodeReport } from '../store.js';
import { CHANNEL, read, transaction, write } from './db.js';

// The lease: taken when free (none yet, or expired by the database's
// clock), renewed by its holder, and taken over at once by a newer process
// of the holder's node. Each change of holder, and a holder coming back to
// a lease that expired, starts a new term. Only a node up at that epoch may
// hold it. When another holds it, what is left of its lease (the statement's
// one snapshot reads the row as it was before the insert).
const HOLD = `
  WITH taken AS (
  INSERT INTO decider (id, node, node_epoch, term, expires_at, relay_url, relay_token)
  SELECT 1, $1, $2, 1, now() + $3 * interval '1 second', $4, $5
  WHERE EXISTS (SELECT 1 FROM nodes WHERE name = $1 AND epoch = $2 AND state = 'up')
  ON CONFLICT (id) DO UPDATE SET
    term = CASE WHEN decider.node = excluded.node AND decider.node_epoch = excluded.node_epoch AND decider.expires_at > now()
      THEN decider.term ELSE decider.term + 1 END,
    node = excluded.node, node_epoch = excluded.node_epoch, expires_at = excluded.expires_at,
    relay_url = excluded.relay_url, relay_token = excluded.relay_token
  WHERE (decider.node = excluded.node AND decider.node_epoch <= excluded.node_epoch) OR decider.expires_at <= now()
  RETURNING term
  )
  SELECT term, NULL::float8 AS "heldForMs", NULL AS url, NULL AS token FROM taken
  UNION ALL
  SELECT NULL, GREATEST(0, extract(epoch FROM expires_at - now()) * 1000)::float8, relay_url, relay_token
  FROM decider WHERE id = 1 AND NOT EXISTS (SELECT 1 FROM taken)`;
const RESIGN = `
  WITH r AS (UPDATE decider SET expires_at = now() WHERE id = 1 AND node = $1 AND term = $2 RETURNING 1)
  SELECT pg_notify('${CHANNEL}', json_build_object('o', $3::text, 'k', 'resigned')::text) FROM r`;
// The fence of every pass's writes: the term still this holder's and
// unexpired, its row held (FOR SHARE) until the pass commits, so a takeover
// waits for the pass and a pass after a takeover writes nothing.
const TERM_HELD = `
  SELECT term FROM decider
  WHERE id = 1 AND term = $1 AND node = $2 AND node_epoch = $3 AND expires_at > now()
  FOR SHARE`;
const REVOKE = `DELETE FROM decider_assignments WHERE job_id = ANY($1::text[])`;
const SETTLE = `DELETE FROM decider_preemptions WHERE waiter = ANY($1::text[])`;
const ASSIGN = `
  INSERT INTO decider_assignments (job_id, node, gpus, term)
  SELECT x.job_id, x.node, x.gpus, $2 FROM jsonb_to_recordset($1::jsonb) AS x (job_id text, node text, gpus jsonb)
  ON CONFLICT (job_id) DO NOTHING`;
// One preemption per waiting job: a second one for the same job is never written.
const PREEMPT = `
  INSERT INTO decider_preemptions (waiter, node, victims, term)
  SELECT x.waiter, x.node, x.victims, $2 FROM jsonb_to_recordset($1::jsonb) AS x (waiter text, node text, victims jsonb)
  ON CONFLICT (waiter) DO NOTHING`;
const OUTCOME = `
  INSERT INTO decider_outcome (id, term, outcome) VALUES (1, $1, $2)
  ON CONFLICT (id) DO UPDATE SET term = excluded.term, outcome = excluded.outcome`;
const DECIDED = `SELECT pg_notify('${CHANNEL}', json_build_object('o', $1::text, 'k', 'decided', 'n', $2::text[])::text)`;
// One statement, so one snapshot: a node's report and its removal of the
// assignments it consumed are seen together or not at all.
//
// The fleet's fingerprint tells whether any report or node the decider
// reads changed since the one the reader holds ($3): a report's version is
// new (and larger) on every write of the row, a node's labels and GPUs
// change only with a registration, which raises its epoch, and a node that
// leaves stops being up; no row of either table is ever deleted. So the
// fingerprint differs after any change, and a pass of a fleet that did not
// change reads two narrow sums instead of every node and report.
//
// Where it differs: every node up with its report's version; its name,
// labels, GPUs and report only when the reader does not hold that version
// already ($1, $2: the names and versions it holds), so a pass reads again
// only the reports that changed.
const SNAPSHOT = `
  WITH seen AS (
    SELECT (SELECT count(*) FILTER (WHERE state = 'up') || '/' || COALESCE(sum(epoch), 0) FROM nodes) || '/' ||
      (SELECT COALESCE(sum(version), 0) FROM decider_reports) AS fingerprint
  )
  SELECT seen.fingerprint,
    CASE WHEN seen.fingerprint IS DISTINCT FROM $3::text THEN
    (SELECT COALESCE(json_agg(json_build_object('name', n.name, 'version', r.version, 'node',
        CASE WHEN k.node IS NULL THEN json_build_object('name', n.name, 'labels', n.labels, 'gpus', n.gpus, 'report', r.report) END)
        ORDER BY n.name), '[]')
      FROM nodes n JOIN decider_reports r ON r.node = n.name AND r.epoch = n.epoch
      LEFT JOIN unnest($1::text[], $2::bigint[]) AS k (node, version) ON k.node = n.name AND k.version = r.version
      WHERE n.state = 'up') END AS nodes,
    (SELECT COALESCE(json_agg(json_build_object('jobId', a.job_id, 'node', a.node, 'gpus', a.gpus, 'term', a.term) ORDER BY a.seq), '[]')
      FROM decider_assignments a) AS assignments,
    (SELECT COALESCE(json_agg(json_build_object('waiter', p.waiter, 'node', p.node, 'victims', p.victims, 'term', p.term)), '[]')
      FROM decider_preemptions p) AS preemptions
  FROM seen`;
// With the fleet's outcome: a node's pass needs both, in one round trip.
// The outcome's text only when the reader does not hold its version ($2).
const ASSIGNED = `
  SELECT
    (SELECT COALESCE(json_agg(json_build_object('jobId', a.job_id, 'node', a.node, 'gpus', a.gpus, 'term', a.term) ORDER BY a.seq), '[]')
      FROM decider_assignments a WHERE a.node = $1) AS assignments,
    (SELECT COALESCE(json_agg(json_build_object('waiter', p.waiter, 'node', p.node, 'victims', p.victims, 'term', p.term)), '[]')
      FROM decider_preemptions p WHERE p.node = $1) AS preemptions,
    (SELECT CASE WHEN version IS DISTINCT FROM $2::bigint THEN outcome END FROM decider_outcome WHERE id = 1) AS outcome,
    (SELECT version FROM decider_outcome WHERE id = 1) AS "outcomeVersion"`;
const REPORT = `
  WITH me AS (SELECT 1 FROM nodes WHERE name = $1 AND epoch = $2 AND state = 'up'),
  consumed AS (
    DELETE FROM decider_assignments a USING unnest($4::text[], $6::bigint[]) AS c (job_id, term)
    WHERE a.node = $1 AND a.job_id = c.job_id AND a.term = c.term AND EXISTS (SELECT 1 FROM me)
  ),
  r AS (
    INSERT INTO decider_reports (node, epoch, report) SELECT $1, $2, $3::jsonb FROM me
    ON CONFLICT (node) DO UPDATE SET epoch = excluded.epoch, report = excluded.report
    RETURNING 1
  )
  SELECT pg_notify('${CHANNEL}', json_build_object('o', $5::text, 'k', 'report')::text) AS notified FROM r`;

type FleetNode = FleetSnapshot['nodes'][number];
/** A node up, as the snapshot gives it: its node only when the reader did not hold this version of its report. */
type VersionedNode = { name: string; version: number; node: FleetNode | null };

/**
 * The fleet's decider in PostgreSQL (store.ts, DeciderStore), all on the
 * pool. Not its lease on the node's lease link: taking over the decider's
 * row waits for the passes and claims that hold it (FOR SHARE), and the
 * node's own renewal must never queue behind that on its one connection.
 */
export class PgDeciderStore implements DeciderStore {
  /** The fleet's outcome as this node last read it, with its version. */
  private outcome: { version: number; text: string } | null = null;
  /** The reports of the last snapshot, by node, with their versions. */
  private reports = new Map<string, { version: number; node: FleetNode }>();
  /** The fleet's fingerprint when `reports` was read (SNAPSHOT); null: none read yet. */
  private fingerprint: string | null = null;

  constructor(
    private readonly pool: pg.Pool,
    /** This node's name, the origin of the changes it announces. */
    private readonly origin: string,
  ) {}

  async hold(node: { name: string; epoch: number }, leaseSeconds: number, relay: RelayOffer | null = null): Promise<LeaseTry> {
    const [row] = await write<{ term: number | null; heldForMs: number | null; url: string | null; token: string | null }>(this.pool, {
      name: 'gantry_decider_hold',
      text: HOLD,
      values: [node.name, node.epoch, leaseSeconds, relay?.url ?? null, relay?.token ?? null],
    });
    if (row?.term != null) return { term: row.term };
    const offer = row?.url && row.token ? { url: row.url, token: row.token } : null;
    return { term: null, heldForMs: row?.heldForMs ?? 0, relay: offer };
  }

  async resign(node: string, term: number): Promise<void> {
    await write(this.pool, { name: 'gantry_decider_resign', text: RESIGN, values: [node, term, this.origin] });
  }

  async snapshot(): Promise<FleetSnapshot> {
    const held = [...this.reports];
    const [row] = await read<{ fingerprint: string; nodes: VersionedNode[] | null } & Omit<FleetSnapshot, 'nodes'>>(this.pool, {
      name: 'gantry_decider_snapshot',
      text: SNAPSHOT,
      values: [held.map(([name]) => name), held.map(([, r]) => r.version), this.fingerprint],
    });
    if (!row) return { nodes: [], assignments: [], preemptions: [] };
    if (row.nodes !== null) {
      const reports = new Map<string, { version: number; node: FleetNode }>();
      for (const { name, version, node } of row.nodes) {
        const known = node ?? this.reports.get(name)?.node;
        // Passes never overlap, so what the statement was told is what it found; if not, read everything again.
        if (known === undefined) {
          this.reports.clear();
          this.fingerprint = null;
          return this.snapshot();
        }
        reports.set(name, { version, node: known });
      }
      this.reports = reports;
      this.fingerprint = row.fingerprint;
    }
    return { nodes: [...this.reports.values()].map((r) => r.node), assignments: row.assignments, preemptions: row.preemptions };
  }

  async decide(term: number, node: { name: string; epoch: number }, d: FleetDecisions): Promise<boolean> {
    return transaction(this.pool, async (c) => {
      const held = await c.query({ name: 'gantry_decider_term_held', text: TERM_HELD, values: [term, node.name, node.epoch] });
      if (held.rowCount === 0) return false;
      if (d.revoke.length > 0) await c.query({ name: 'gantry_decider_revoke', text: REVOKE, values: [d.revoke] });
      if (d.settled.length > 0) await c.query({ name: 'gantry_decider_settle', text: SETTLE, values: [d.settled] });
      if (d.assign.length > 0) {
        const rows = d.assign.map((a) => ({ job_id: a.jobId, node: a.node, gpus: a.gpus }));
        await c.query({ name: 'gantry_decider_assign', text: ASSIGN, values: [JSON.stringify(rows), term] });
      }
      if (d.preempt.length > 0) {
        const rows = d.preempt.map((p) => ({ waiter: p.waiter, node: p.node, victims: p.victims }));
        await c.query({ name: 'gantry_decider_preempt', text: PREEMPT, values: [JSON.stringify(rows), term] });
      }
      if (d.outcome !== null) await c.query({ name: 'gantry_decider_outcome', text: OUTCOME, values: [term, d.outcome] });
      const told = [...new Set([...d.assign, ...d.preempt].map((x) => x.node))];
      if (told.length > 0) await c.query({ name: 'gantry_decider_decided', text: DECIDED, values: [this.origin, told] });
      return true;
    });
  }

  async report(report: NodeReport, consumed: readonly { jobId: string; term: number }[]): Promise<boolean> {
    const rows = await write(this.pool, {
      name: 'gantry_decider_report',
      text: REPORT,
      values: [report.node, report.epoch, JSON.stringify(report), consumed.map((c) => c.jobId), this.origin, consumed.map((c) => c.term)],
    });
    return rows.length === 1;
  }

  async assigned(node: string): Promise<NodeAssignments> {
    const [row] = await read<NodeAssignments & { outcomeVersion: number | null }>(this.pool, {
      name: 'gantry_decider_assigned',
      text: ASSIGNED,
      values: [node, this.outcome?.version ?? null],
    });
    if (!row) return { assignments: [], preemptions: [], outcome: null };
    const version = row.outcomeVersion;
    if (version === null) this.outcome = null;
    else if (row.outcome !== null) this.outcome = { version, text: row.outcome };
    return { assignments: row.assignments, preemptions: row.preemptions, outcome: this.outcome?.text ?? null };
  }
}
