import { Kysely, type Migration, type MigrationProvider, Migrator, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { clientConfig } from './db.js';

/**
 * The schema, one statement per entry. It mirrors the SQLite store's (times
 * as ISO text, the spec and GPU list as JSON text) plus the fleet's columns:
 * the node that took a job and its attempt, and the node registry, whose
 * times are the database's own (`now()`) so that nodes' clocks need not
 * agree. Log chunks are bytea because PostgreSQL text cannot hold NUL. The
 * ISO times collate bytewise ("C"), so that they compare and sort as times
 * whatever the database's locale.
 */
const INITIAL: readonly string[] = [
  `CREATE TABLE jobs (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    name TEXT,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    spec TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    idempotency_key TEXT,
    request_id TEXT,
    container_id TEXT,
    gpus TEXT NOT NULL DEFAULT '[]',
    node TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    gpu_memory_mib INTEGER,
    exit_code INTEGER,
    reason TEXT,
    result TEXT,
    pull_status TEXT,
    pull_progress TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    created_at TEXT COLLATE "C" NOT NULL,
    started_at TEXT COLLATE "C",
    finished_at TEXT COLLATE "C",
    deadline_at TEXT COLLATE "C"
  )`,
  // Fleet-wide Idempotency-Key: every node's insert conflicts on this one index.
  `CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner, idempotency_key) WHERE idempotency_key IS NOT NULL`,
  `CREATE INDEX jobs_state ON jobs (state, priority DESC, seq)`,
  `CREATE INDEX jobs_owner ON jobs (owner, seq)`,
  `CREATE INDEX jobs_node ON jobs (node, state) WHERE node IS NOT NULL`,
  `CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL`,
  `CREATE TABLE job_labels (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (job_id, key)
  )`,
  `CREATE INDEX job_labels_kv ON job_labels (key, value)`,
  `CREATE TABLE log_chunks (
    job_id TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    lines BYTEA NOT NULL,
    PRIMARY KEY (job_id, first_seq)
  )`,
  `CREATE TABLE log_state (
    job_id TEXT PRIMARY KEY,
    next_seq BIGINT NOT NULL DEFAULT 1,
    stdout_records BIGINT NOT NULL DEFAULT 0,
    stderr_records BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    truncated BOOLEAN NOT NULL DEFAULT false,
    last_stdout TEXT,
    error TEXT,
    complete BOOLEAN NOT NULL DEFAULT false
  )`,
  `CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
  )`,
  `CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    labels JSONB NOT NULL DEFAULT '{}',
    gpus JSONB NOT NULL DEFAULT '[]',
    version TEXT NOT NULL,
    lease_seconds INTEGER NOT NULL,
    epoch BIGINT NOT NULL,
    state TEXT NOT NULL,
    drained BOOLEAN NOT NULL DEFAULT false,
    started_at TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
  )`,
  // Every state change leaves a dead entry in the queued range of jobs_state
  // (state is indexed, so no update is HOT), and the scheduler scans that range
  // on every queue change: vacuum jobs after 1% of its rows (at least 1,000)
  // died, not the default 20%, so a large table keeps its queue scan short.
  `ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000)`,
];

function statements(list: readonly string[]): Migration {
  return {
    async up(db) {
      for (const s of list) await sql.raw(s).execute(db);
    },
  };
}

/**
 * The audit trail (store.ts, AuditStore): `at` is the database's clock, like
 * the node registry's times, so records of different nodes order by one
 * clock. The trigger refuses any UPDATE (and TRUNCATE), whichever client
 * tries; retention's DELETE is the only removal.
 */
const AUDIT: readonly string[] = [
  `CREATE TABLE audit (
    seq BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    node TEXT NOT NULL,
    actor TEXT,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    status INTEGER,
    problem_type TEXT,
    request_id TEXT,
    detail JSONB NOT NULL DEFAULT '{}'
  )`,
  `CREATE INDEX audit_at ON audit (at)`,
  `CREATE INDEX audit_actor ON audit (actor, seq)`,
  `CREATE INDEX audit_target ON audit (target, seq)`,
  `CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    RAISE EXCEPTION 'audit records are append-only (% refused)', TG_OP;
  END
  $$`,
  `CREATE TRIGGER audit_append_only BEFORE UPDATE OR TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()`,
];

/**
 * Retries: the attempts of a job that ended (JSON text like `gpus`, oldest
 * first, written with the job's row in one UPDATE) and the earliest time
 * its current attempt may start. Existing jobs get none and NULL.
 */
const RETRIES: readonly string[] = [
  `ALTER TABLE jobs ADD COLUMN attempts TEXT NOT NULL DEFAULT '[]', ADD COLUMN not_before TEXT COLLATE "C"`,
];

/**
 * Usage accounting reads the unfinished jobs created before a window's end
 * (jobs.overlapping); jobs_finished holds only finished ones, so the
 * unfinished get a partial index of their own.
 */
const UNFINISHED: readonly string[] = [`CREATE INDEX jobs_unfinished ON jobs (created_at) WHERE finished_at IS NULL`];

/**
 * GPU telemetry: the summary of what the sampler measured of the job's last
 * attempt (JSON text, written by the run's node with its fence). Existing
 * jobs get NULL: nothing was measured.
 */
const GPU_TELEMETRY: readonly string[] = [`ALTER TABLE jobs ADD COLUMN gpu_telemetry TEXT`];

/**
 * A job's run settings (JSON text, model/run-settings.ts), resolved at
 * submit. Existing jobs get NULL; the app gives the unended ones theirs when
 * it starts (JobStore.fillSettings).
 */
const RUN_SETTINGS: readonly string[] = [`ALTER TABLE jobs ADD COLUMN settings TEXT`];

/**
 * The epoch of the node's process that holds a job's run (store.ts: Fence).
 * Existing jobs get 0, which any process of their node may write over; the
 * next start's adoption stamps its own.
 */
const NODE_EPOCH: readonly string[] = [`ALTER TABLE jobs ADD COLUMN node_epoch BIGINT NOT NULL DEFAULT 0`];

/**
 * History that costs nothing to keep as it grows:
 * - usage_intervals: the GPU time of jobs retention pruned, one row per
 *   attempt that held GPUs (store.ts, UsageInterval), so /v1/usage stays
 *   right for windows that cover them.
 * - job_counts: jobs by owner, state and whether they wait untaken in the
 *   queue, for the metrics: a row of +1 and one of -1 per change of those,
 *   written by triggers so every writer keeps it; appended, never updated,
 *   so no two writes wait on one another for it, and folded by whoever
 *   reads it (jobs.ts, COUNT; the retention sweep). Filled from the jobs
 *   already there, after the triggers exist: CREATE TRIGGER locks jobs
 *   against writes until this migration commits, so no change is counted
 *   twice or missed.
 * - jobs_waiting: the oldest waiting job without reading the queue.
 */
const HISTORY: readonly string[] = [
  `CREATE TABLE usage_intervals (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    owner TEXT NOT NULL,
    gpus TEXT NOT NULL,
    started_at TEXT COLLATE "C" NOT NULL,
    ended_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (job_id, attempt)
  )`,
  `CREATE INDEX usage_intervals_ended ON usage_intervals (ended_at)`,
  `CREATE TABLE job_counts (owner TEXT NOT NULL, state TEXT NOT NULL, waiting BOOLEAN NOT NULL, count BIGINT NOT NULL)`,
  `CREATE FUNCTION job_count() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
      INSERT INTO job_counts (owner, state, waiting, count) VALUES (OLD.owner, OLD.state, OLD.state = 'queued' AND OLD.node IS NULL, -1);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
      INSERT INTO job_counts (owner, state, waiting, count) VALUES (NEW.owner, NEW.state, NEW.state = 'queued' AND NEW.node IS NULL, 1);
    END IF;
    RETURN NULL;
  END
  $$`,
  `CREATE TRIGGER job_count_insert AFTER INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION job_count()`,
  `CREATE TRIGGER job_count_update AFTER UPDATE OF owner, state, node ON jobs FOR EACH ROW
    WHEN (OLD.owner IS DISTINCT FROM NEW.owner OR OLD.state IS DISTINCT FROM NEW.state OR (OLD.node IS NULL) <> (NEW.node IS NULL))
    EXECUTE FUNCTION job_count()`,
  `CREATE TRIGGER job_count_delete AFTER DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION job_count()`,
  `INSERT INTO job_counts (owner, state, waiting, count)
    SELECT owner, state, state = 'queued' AND node IS NULL, COUNT(*) FROM jobs GROUP BY 1, 2, 3`,
  `CREATE INDEX jobs_waiting ON jobs (created_at) WHERE state = 'queued' AND node IS NULL`,
];

/**
 * Where each node left off (change-mark.ts): every write of a job stamps
 * its row with the writing transaction's id, all but a telemetry sample's
 * (the only UPDATE that sets gpu_telemetry alone, and the one write not
 * announced either); a later column joins the trigger's list. Rows written
 * before this migration keep NULL, which no node's mark can miss: each
 * node's first mark is taken after it started.
 */
const CHANGES: readonly string[] = [
  `ALTER TABLE jobs ADD COLUMN change_xid xid8`,
  `CREATE FUNCTION job_changed() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    NEW.change_xid := pg_current_xact_id();
    RETURN NEW;
  END
  $$`,
  `CREATE TRIGGER job_changed_insert BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION job_changed()`,
  `CREATE TRIGGER job_changed_update BEFORE UPDATE OF
    id, owner, name, state, priority, spec, spec_hash, idempotency_key, request_id, container_id, gpus, node, attempt,
    node_epoch, attempts, not_before, gpu_memory_mib, exit_code, reason, result, pull_status, pull_progress,
    cancel_requested, created_at, started_at, finished_at, deadline_at, settings
    ON jobs FOR EACH ROW EXECUTE FUNCTION job_changed()`,
  `CREATE INDEX jobs_changed ON jobs (change_xid) WHERE change_xid IS NOT NULL`,
];

/**
 * The fleet's one decider (GANTRY_FLEET_DECIDER=elected; decider.ts): its
 * lease (one row, timed by the database's clock, with the term every pass's
 * writes are checked against), the fleet's view of why queued jobs wait,
 * the assignments and preemptions it wrote for the nodes, and each node's
 * report of what it holds. Nothing else reads them.
 */
const DECIDER: readonly string[] = [
  `CREATE TABLE decider (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    node TEXT NOT NULL,
    node_epoch BIGINT NOT NULL,
    term BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
  )`,
  `CREATE TABLE decider_outcome (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    term BIGINT NOT NULL,
    outcome TEXT NOT NULL
  )`,
  `CREATE TABLE decider_assignments (
    seq BIGSERIAL,
    job_id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    gpus JSONB,
    term BIGINT NOT NULL
  )`,
  `CREATE INDEX decider_assignments_node ON decider_assignments (node, seq)`,
  `CREATE TABLE decider_preemptions (
    waiter TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    victims JSONB NOT NULL,
    term BIGINT NOT NULL
  )`,
  `CREATE TABLE decider_reports (
    node TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    report JSONB NOT NULL
  )`,
];

/** The client's X-Request-Id kept beside Gantry's own request id, as a claim (model/audit.ts). */
const HARDEN_AUDIT_CLIENT_REQUEST_ID: readonly string[] = [`ALTER TABLE audit ADD COLUMN client_request_id TEXT`];

/**
 * Each node's report to the decider, and the decider's outcome, carry a
 * version new on every write of the row (decider.ts): the decider reads
 * again only the reports that changed, and a node the outcome only when it
 * changed. A trigger sets it, so a node of an older Gantry that writes the
 * row without one, during a rolling upgrade, still changes it.
 */
const ROW_VERSIONS: readonly string[] = [
  `CREATE SEQUENCE decider_row_version`,
  `ALTER TABLE decider_reports ADD COLUMN version BIGINT NOT NULL DEFAULT nextval('decider_row_version')`,
  `ALTER TABLE decider_outcome ADD COLUMN version BIGINT NOT NULL DEFAULT nextval('decider_row_version')`,
  `CREATE FUNCTION decider_row_versioned() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    NEW.version := nextval('decider_row_version');
    RETURN NEW;
  END
  $$`,
  `CREATE TRIGGER decider_report_versioned BEFORE UPDATE ON decider_reports FOR EACH ROW EXECUTE FUNCTION decider_row_versioned()`,
  `CREATE TRIGGER decider_outcome_versioned BEFORE UPDATE ON decider_outcome FOR EACH ROW EXECUTE FUNCTION decider_row_versioned()`,
];

/** Ordered by name. Append only: never edit a migration that has shipped. */
const MIGRATIONS: Record<string, Migration> = {
  '0001_initial': statements(INITIAL),
  '0002_audit': statements(AUDIT),
  '0003_retries': statements(RETRIES),
  '0004_jobs_unfinished': statements(UNFINISHED),
  '0005_gpu_telemetry': statements(GPU_TELEMETRY),
  '0006_run_settings': statements(RUN_SETTINGS),
  '0007_node_epoch': statements(NODE_EPOCH),
  '0008_scale_history': statements(HISTORY),
  '0009_scale_changes': statements(CHANGES),
  '0010_decider_lease': statements(DECIDER),
  /** The JSON document a job wrote to its result file (JSON text; NULL for none). */
  '0011_airflow_result_document': statements([`ALTER TABLE jobs ADD COLUMN result_document TEXT`]),
  '0012_harden_audit_client_request_id': statements(HARDEN_AUDIT_CLIENT_REQUEST_ID),
  /** Where the decider relays the change feed (fleet/change-relay.ts), published with its lease. */
  '0013_change_relay': statements([`ALTER TABLE decider ADD COLUMN relay_url TEXT, ADD COLUMN relay_token TEXT`]),
  '0014_decider_row_versions': statements(ROW_VERSIONS),
};

const provider: MigrationProvider = {
  async getMigrations() {
    return MIGRATIONS;
  },
};

/**
 * Brings the schema up to date. Kysely's PostgreSQL adapter holds an
 * advisory lock while it migrates, so nodes starting together migrate once;
 * each migration runs in its own transaction. The migrator has its own small
 * pool, which destroy() ends.
 */
export async function migrate(url: string, node: string): Promise<void> {
  const pool = new pg.Pool({ ...clientConfig(url, node), max: 2 });
  pool.on('error', () => undefined); // an idle connection that fails is dropped; the migration's own query reports it
  const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
  try {
    const { error } = await new Migrator({ db, provider }).migrateToLatest();
    if (error !== undefined) throw error;
  } finally {
    await db.destroy();
  }
}
