/**
 * The job store's hot paths, as the stores write them (hand-written SQL,
 * prepared once) against the same statements built with Kysely's query
 * builder and run through its dialects, on SQLite and PostgreSQL:
 *
 *   insert  a submit (jobs.insert: the idempotent INSERT, labels, and for
 *           PostgreSQL the change announcement)
 *   get     a status poll that misses the record cache (a read by id)
 *   claim   jobs.claim (the compare-and-set on `node IS NULL`, the node's lease checked)
 *   update  a run's fenced write (jobs.update with a fence)
 *   append  a run's fenced log append (logs.append of one 10-line chunk
 *           and the capture's state; the store's own code only, with
 *           no Kysely counterpart)
 *
 * Both sides map rows to records with store/job-row.ts, so the difference
 * is building and running the SQL. Variants run in alternating rounds, so
 * a noisy neighbour slows both alike.
 *
 *   node --import tsx bench/store-hot-paths.ts [--ops 2000] [--rounds 5] [--only sqlite|postgres]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { type Expression, Kysely, PostgresDialect, type SqlBool, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import { EMPTY_LOG_STATE } from '../src/model/log.js';
import { type JobRow, toRecord } from '../src/store/job-row.js';
import { clientConfig } from '../src/store/postgres/db.js';
import { openPostgresStore } from '../src/store/postgres/index.js';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import type { JobRecord, NewJob, Store } from '../src/store/store.js';
import { createDatabase, startPostgres } from '../test/helpers/postgres.js';
import { RUN_SETTINGS } from '../test/helpers/records.js';

const { values: args } = parseArgs({
  options: { ops: { type: 'string', default: '2000' }, rounds: { type: 'string', default: '5' }, only: { type: 'string' } },
});
const OPS = Number(args.ops);
const ROUNDS = Number(args.rounds);
const NODE = { name: 'bench-node', epoch: 1 };
const FENCE = { node: NODE.name, attempt: 1, epoch: 1 };

interface Jobs {
  insert(job: NewJob): Promise<JobRecord>;
  get(id: string): Promise<JobRecord | undefined>;
  claim(id: string): Promise<JobRecord | undefined>;
  /** A fenced write of a run's detail. */
  update(id: string, result: string): Promise<JobRecord | undefined>;
  /** A fenced log append of one chunk (the store's own only). */
  append?(id: string): Promise<void>;
}

type Tables = { jobs: JobRow; job_labels: { job_id: string; key: string; value: string }; nodes: Record<string, unknown> };

let seq = 0;
const newJob = (tag: string): NewJob => ({
  id: `${tag}-${++seq}`,
  owner: 'bench',
  spec: { image: 'local/busybox:latest', command: ['sh', '-c', 'echo hi'], labels: { dag: 'd', task: 't' } },
  specHash: 'h',
  idempotencyKey: `k-${tag}-${seq}`,
  requestId: null,
  createdAt: new Date().toISOString(),
  settings: RUN_SETTINGS,
});

/** The store's own methods; `get` bypasses the record cache so both sides read the database. */
function handWritten(store: Store, uncached: (id: string) => Promise<JobRecord | undefined>): Jobs {
  return {
    insert: async (job) => (await store.jobs.insert(job)).record,
    get: uncached,
    claim: (id) => store.jobs.claim(id, NODE),
    update: (id, result) => store.jobs.update(id, { result }, { fence: FENCE }),
    append: (id) => {
      const time = Date.now();
      const lines = Array.from({ length: 10 }, (_, i) => ({ stream: 'stdout' as const, time, line: `epoch 1 step ${i} loss 0.${i}` }));
      const next = { ...EMPTY_LOG_STATE, nextSeq: 11, stdoutRecords: 10, bytes: 200, lastStdout: lines[9]!.line };
      return store.logs.append(id, lines, next, FENCE);
    },
  };
}

/** The same statements from Kysely's builder. `notify` adds PostgreSQL's change announcement, as the store's statements have it. */
function withKysely(db: Kysely<Tables>, dialect: 'sqlite' | 'postgres'): Jobs {
  const ended = sql<SqlBool>`state not in ('succeeded', 'failed', 'cancelled', 'timed_out')`;
  const nodeUp = (name: string, epoch: number): Expression<SqlBool> =>
    sql<SqlBool>`exists (select 1 from nodes where name = ${name} and epoch = ${epoch} and state = 'up' and ${
      dialect === 'sqlite' ? sql`drained = 0` : sql`not drained for share`
    })`;
  const notify = (origin: string) =>
    sql<string>`pg_notify('gantry', json_build_object('o', ${origin}::text, 'k', 'job', 'j', u.id, 's', u.state, 'n', u.node, 'c', u.cancel_requested)::text)`.as(
      'notified',
    );
  /** An UPDATE's new row; on PostgreSQL announced as the store's statements announce it. */
  // biome-ignore lint/suspicious/noExplicitAny: both updates' builder types, which differ only in their WHERE
  const changed = (update: any): Promise<JobRecord | undefined> => {
    if (dialect === 'sqlite') return one(update.returningAll().executeTakeFirst());
    return one(
      db
        .with('u', () => update.returningAll())
        .selectFrom('u')
        .selectAll('u')
        .select(notify('bench'))
        .executeTakeFirst() as unknown as Promise<JobRow | undefined>,
    );
  };
  const one = async (q: Promise<JobRow | undefined>) => {
    const row = await q;
    return row && toRecord(row);
  };
  return {
    async insert(job) {
      const values = {
        id: job.id,
        owner: job.owner,
        name: job.spec.name ?? null,
        state: 'queued' as const,
        priority: job.spec.priority ?? 0,
        spec: JSON.stringify(job.spec),
        spec_hash: job.specHash,
        idempotency_key: job.idempotencyKey,
        request_id: job.requestId,
        created_at: job.createdAt,
        settings: JSON.stringify(job.settings),
      };
      const labels = Object.entries(job.spec.labels ?? {}).map(([key, value]) => ({ job_id: job.id, key, value }));
      if (dialect === 'sqlite') {
        return db.transaction().execute(async (tx) => {
          const row = await tx
            .insertInto('jobs')
            .values(values as never)
            .onConflict((oc) => oc.doNothing())
            .returningAll()
            .executeTakeFirst();
          if (row && labels.length > 0) await tx.insertInto('job_labels').values(labels).execute();
          return toRecord(row as JobRow);
        });
      }
      const row = await db
        .with('u', (w) =>
          w
            .insertInto('jobs')
            .values(values as never)
            .onConflict((oc) => oc.doNothing())
            .returningAll(),
        )
        // Kysely has no builder for unnest: the labels' select is raw SQL, as it is in the store.
        .with('l', (w) =>
          w
            .insertInto('job_labels')
            .columns(['job_id', 'key', 'value'])
            .expression(
              sql`SELECT u.id, x.key, x.value FROM u, unnest(${labels.map((l) => l.key)}::text[], ${labels.map((l) => l.value)}::text[]) AS x (key, value)`,
            ),
        )
        .selectFrom('u')
        .selectAll('u')
        .select(notify('bench'))
        .executeTakeFirst();
      return toRecord(row as unknown as JobRow);
    },
    get: (id) => one(db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst()),
    claim(id) {
      const update = db
        .updateTable('jobs')
        .set({ node: NODE.name })
        .where('id', '=', id)
        .where('state', '=', 'queued')
        .where('node', 'is', null)
        .where(nodeUp(NODE.name, NODE.epoch));
      return changed(update);
    },
    update(id, result) {
      const update = db
        .updateTable('jobs')
        .set({ result })
        .where('id', '=', id)
        .where('node', '=', NODE.name)
        .where('attempt', '=', 1)
        .where(ended);
      return changed(update);
    },
  };
}

/** Latencies (µs) of `n` sequential calls. */
async function time(n: number, op: (i: number) => Promise<unknown>): Promise<number[]> {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await op(i);
    out[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  return out;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

/** Runs every path of both variants in alternating rounds; prints ops/s and median µs per path and variant. */
async function compare(label: string, variants: Record<string, Jobs>, ops: number): Promise<void> {
  const lat: Record<string, Record<string, number[]>> = {};
  const paths = ['insert', 'get', 'claim', 'update', 'append'] as const;
  for (let round = 0; round < ROUNDS; round++) {
    // Each round in the other order, so neither variant always runs on the table the other just grew.
    const order = Object.entries(variants);
    if (round % 2 === 1) order.reverse();
    for (const [name, jobs] of order) {
      const ids: string[] = [];
      const by = (lat[name] ??= {});
      const add = (p: string, xs: number[]) => (by[p] ??= []).push(...xs);
      // The first round warms each variant (prepared statements, the JIT) and is not counted.
      const keep = round > 0;
      const ins = await time(ops, async () => ids.push((await jobs.insert(newJob(name))).id));
      const get = await time(ops, (i) => jobs.get(ids[i]!));
      const claim = await time(ops, (i) => jobs.claim(ids[i]!));
      const update = await time(ops, (i) => jobs.update(ids[i]!, `r${i}`));
      const { append } = jobs;
      const appended = append ? await time(ops, (i) => append(ids[i]!)) : [];
      if (keep) {
        add('insert', ins);
        add('get', get);
        add('claim', claim);
        add('update', update);
        if (append) add('append', appended);
      }
    }
  }
  console.log(`\n${label} (${ops} ops × ${ROUNDS - 1} counted rounds, sequential)`);
  console.log(`${'path'.padEnd(8)} ${'variant'.padEnd(12)} ${'ops/s'.padStart(9)} ${'median µs'.padStart(10)}`);
  for (const p of paths) {
    for (const name of Object.keys(variants)) {
      const xs = lat[name]![p];
      if (!xs) continue;
      const total = xs.reduce((s, x) => s + x, 0);
      console.log(
        `${p.padEnd(8)} ${name.padEnd(12)} ${Math.round((xs.length / total) * 1e6)
          .toString()
          .padStart(9)} ${median(xs).toFixed(1).padStart(10)}`,
      );
    }
  }
}

async function sqlite(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-store-'));
  const store = await openSqliteStore(dir);
  await store.nodes.register({ name: NODE.name, labels: {}, gpus: [], version: 'bench', leaseSeconds: 3600 });
  // The store's own connection settings (WAL, synchronous NORMAL) on Kysely's connection too.
  const conn = new Database(path.join(dir, 'gantry.db'));
  conn.pragma('journal_mode = WAL');
  conn.pragma('synchronous = NORMAL');
  conn.pragma('foreign_keys = ON');
  conn.pragma('busy_timeout = 5000');
  const db = new Kysely<Tables>({ dialect: new SqliteDialect({ database: conn }) });
  const sqliteJobs = store.jobs as Store['jobs'] & { forget(id?: string): void };
  try {
    await compare(
      'SQLite',
      {
        'hand-written': handWritten(store, (id) => {
          sqliteJobs.forget(id);
          return store.jobs.get(id);
        }),
        kysely: withKysely(db, 'sqlite'),
      },
      OPS,
    );
  } finally {
    await db.destroy();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function postgres(): Promise<void> {
  const cluster = await startPostgres(null);
  try {
    const url = await createDatabase(cluster.url, 'bench_store');
    const store = await openPostgresStore({ url, node: NODE.name });
    await store.nodes.register({ name: NODE.name, labels: {}, gpus: [], version: 'bench', leaseSeconds: 3600 });
    // The store's connection settings (int8 as a number), on a pool of the same size.
    const pool = new pg.Pool({ ...clientConfig(url, 'bench-kysely'), max: 10 });
    const db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) });
    try {
      await compare(
        'PostgreSQL',
        { 'hand-written': handWritten(store, (id) => store.jobs.get(id, { fresh: true })), kysely: withKysely(db, 'postgres') },
        Math.max(1, Math.floor(OPS / 4)),
      );
    } finally {
      await db.destroy();
      await store.close();
    }
  } finally {
    await cluster.destroy();
  }
}

console.log(`node ${process.version}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'})`);
if (args.only !== 'postgres') await sqlite();
if (args.only !== 'sqlite') await postgres();
