/**
 * The fleet's decider lease and its fences, on a real, throwaway
 * PostgreSQL (store/postgres/decider.ts and the claim of jobs.ts): one
 * holder at a time, a term bumped by every takeover, and a deposed
 * decider's writes refused twice over: its pass is not written, and an
 * assignment it wrote before is refused when a node claims with it.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { createPool } from '../../src/store/postgres/db.js';
import { PgDeciderStore } from '../../src/store/postgres/decider.js';
import { openPostgresStore } from '../../src/store/postgres/index.js';
import type { FleetDecisions, Store } from '../../src/store/store.js';
import { collectChanges as collect } from '../helpers/changes.js';
import { createDatabase, queryOnce, startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { newJob, nodeInfo } from '../helpers/records.js';

let cluster: TestPostgres | null = null;
before(async () => {
  cluster = await startPostgres();
});
after(() => cluster?.destroy());

const NOTHING: FleetDecisions = { assign: [], preempt: [], revoke: [], settled: [], outcome: null };
/** The decider lease of these tests, in seconds: short, so a takeover needs no long wait. */
const LEASE = 1;

async function node(url: string, name: string): Promise<{ store: Store; me: { name: string; epoch: number } }> {
  const store = await openPostgresStore({ url, node: name, leaseSeconds: 30, log: { warn: () => undefined } });
  const { epoch } = await store.nodes.register(nodeInfo(name));
  return { store, me: { name, epoch } };
}

test('one decider at a time; a deposed one writes nothing, and its earlier assignment cannot be claimed', async (t) => {
  const url = await createDatabase(cluster!.url, 'decider_fence');
  const x = await node(url, 'x');
  const y = await node(url, 'y');
  t.after(async () => {
    await x.store.close();
    await y.store.close();
  });
  const stale = (await x.store.jobs.insert(newJob())).record;
  const later = (await x.store.jobs.insert(newJob())).record;

  const taken = await x.store.decider!.hold(x.me, LEASE);
  assert.ok(taken.term !== null, 'a free lease is taken');
  const first = taken.term;
  const refused = await y.store.decider!.hold(y.me, LEASE);
  assert.equal(refused.term, null, 'an unexpired lease is not taken by another node');
  assert.ok(
    refused.term === null && refused.heldForMs > (LEASE - 1) * 1000 && refused.heldForMs <= LEASE * 1000,
    `and it is told how long the holder's lease still runs: ${JSON.stringify(refused)}`,
  );
  assert.deepEqual(await x.store.decider!.hold(x.me, LEASE), { term: first }, 'its holder renews it in the same term');
  assert.ok(await x.store.decider!.decide(first, x.me, { ...NOTHING, assign: [{ jobId: stale.id, node: 'y', gpus: null }] }));

  // x stops renewing (frozen, cut off); once its lease ran out by the database's clock, y takes over.
  await sleep(LEASE * 1000 + 300);
  const second = (await y.store.decider!.hold(y.me, LEASE)).term;
  assert.equal(second, first + 1, 'a takeover starts a new term');

  const deposed = await x.store.decider!.decide(first, x.me, { ...NOTHING, assign: [{ jobId: later.id, node: 'y', gpus: null }] });
  assert.equal(deposed, false, "the deposed decider's pass is refused");
  const { assignments } = await y.store.decider!.assigned('y');
  assert.deepEqual(
    assignments.map((a) => [a.jobId, a.term]),
    [[stale.id, first]],
    'nothing of the refused pass was written',
  );

  assert.equal(
    await y.store.jobs.claim(stale.id, y.me, { term: first }),
    undefined,
    "an assignment of the deposed decider's term is refused",
  );
  assert.equal((await y.store.jobs.get(stale.id, { fresh: true }))?.node, null, 'the job is still nobody’s');

  // The new decider takes the stale assignment back and gives the job out again under its own term.
  assert.ok(
    await y.store.decider!.decide(second!, y.me, { ...NOTHING, revoke: [stale.id], assign: [{ jobId: stale.id, node: 'y', gpus: null }] }),
  );
  assert.equal(await x.store.jobs.claim(stale.id, x.me, { term: second! }), undefined, 'an assignment is claimed only by its node');
  const claimed = await y.store.jobs.claim(stale.id, y.me, { term: second! });
  assert.equal(claimed?.node, 'y', 'the current term’s assignment is claimed');
  assert.equal(
    await y.store.jobs.claim(later.id, y.me, { term: second! }),
    undefined,
    'a job assigned to no one cannot be claimed with a term',
  );
});

test('a node reports and consumes its assignments in one write; only the term it read is consumed', async (t) => {
  const url = await createDatabase(cluster!.url, 'decider_report');
  const x = await node(url, 'x');
  t.after(() => x.store.close());
  const job = (await x.store.jobs.insert(newJob())).record;
  const { term } = await x.store.decider!.hold(x.me, LEASE);
  assert.ok(term !== null);
  assert.ok(await x.store.decider!.decide(term, x.me, { ...NOTHING, assign: [{ jobId: job.id, node: 'x', gpus: null }] }));
  const report = { node: 'x', epoch: x.me.epoch, idle: null, maxRunning: 4, runs: [], holdings: [], withheld: [] };

  assert.ok(await x.store.decider!.report(report, [{ jobId: job.id, term: term + 1 }]));
  assert.equal((await x.store.decider!.assigned('x')).assignments.length, 1, 'an assignment of another term is left');
  assert.ok(await x.store.decider!.report(report, [{ jobId: job.id, term }]));
  assert.equal((await x.store.decider!.assigned('x')).assignments.length, 0, 'the assignment read is consumed');
  const snapshot = await x.store.decider!.snapshot();
  assert.deepEqual(
    snapshot.nodes.map((n) => [n.name, n.report.maxRunning]),
    [['x', 4]],
    'the decider sees the report',
  );
  assert.equal(await x.store.decider!.report({ ...report, epoch: x.me.epoch + 1 }, []), false, 'a report of another epoch is refused');
});

test('a pass reads again only the reports that changed, and a node the outcome only when it changed, whoever wrote the row', async (t) => {
  const url = await createDatabase(cluster!.url, 'decider_versions');
  const members = [await node(url, 'x'), await node(url, 'y'), await node(url, 'z')];
  t.after(() => Promise.all(members.map((m) => m.store.close())));
  const report = (m: (typeof members)[number], maxRunning: number) =>
    m.store.decider!.report({ node: m.me.name, epoch: m.me.epoch, idle: null, maxRunning, runs: [], holdings: [], withheld: [] }, []);
  for (const m of members) assert.ok(await report(m, 1));
  // The decider's own store, on a pool whose answers this test reads.
  const pool = createPool({ url, node: 'x', leaseSeconds: 30 });
  t.after(() => pool.end());
  /** Per pass: the reports sent, or 'unchanged' when the fleet's fingerprint said nothing changed and no node was read. */
  const sent: (number | 'unchanged')[] = [];
  const outcomes: (string | null)[] = [];
  const query = pool.query.bind(pool) as (q: pg.QueryConfig) => Promise<pg.QueryResult>;
  pool.query = (async (q: pg.QueryConfig) => {
    const r = await query(q);
    if (q.name === 'gantry_decider_snapshot') {
      const nodes = r.rows[0].nodes as { node: unknown }[] | null;
      sent.push(nodes === null ? 'unchanged' : nodes.filter((n) => n.node !== null).length);
    }
    if (q.name === 'gantry_decider_assigned') outcomes.push(r.rows[0].outcome);
    return r;
  }) as typeof pool.query;
  const decider = new PgDeciderStore(pool, 'x');
  /** Each node up in the snapshot, with the maxRunning of its report: `x:1 y:1`. */
  const maxRunning = async () => (await decider.snapshot()).nodes.map((n) => `${n.name}:${n.report.maxRunning}`).join(' ');

  assert.equal(await maxRunning(), 'x:1 y:1 z:1');
  assert.equal(await maxRunning(), 'x:1 y:1 z:1');
  assert.ok(await report(members[1]!, 2));
  assert.equal(await maxRunning(), 'x:1 y:2 z:1');
  // An older Gantry writes the report with no version of its own: the trigger gives it one.
  await queryOnce(url, `UPDATE decider_reports SET report = jsonb_set(report, '{maxRunning}', '3') WHERE node = 'z'`);
  assert.equal(await maxRunning(), 'x:1 y:2 z:3');
  // A node lost is no longer in the snapshot; back under a new epoch, it is there with its new report.
  await queryOnce(url, `UPDATE nodes SET state = 'lost' WHERE name = 'y'`);
  assert.equal(await maxRunning(), 'x:1 z:3');
  const back = { store: members[1]!.store, me: { name: 'y', epoch: (await members[1]!.store.nodes.register(nodeInfo('y'))).epoch } };
  assert.ok(await report(back, 4));
  assert.equal(await maxRunning(), 'x:1 y:4 z:3');
  // Renewals change no report and no node the decider reads.
  await members[0]!.store.nodes.renew('x', members[0]!.me.epoch);
  assert.equal(await maxRunning(), 'x:1 y:4 z:3');
  assert.deepEqual(
    sent,
    [3, 'unchanged', 1, 1, 0, 1, 'unchanged'],
    'each pass is sent only the reports it does not hold, and none when the fleet did not change',
  );

  const { term } = await decider.hold(members[0]!.me, 30);
  assert.ok(term !== null);
  const seen = async () => (await decider.assigned('z')).outcome;
  assert.equal(await seen(), null, 'no outcome written yet');
  assert.ok(await decider.decide(term, members[0]!.me, { ...NOTHING, outcome: '{"v":1}' }));
  assert.equal(await seen(), '{"v":1}');
  assert.equal(await seen(), '{"v":1}', 'the outcome held is kept while it is unchanged');
  // An older Gantry's decider writes the outcome with no version of its own.
  await queryOnce(url, `UPDATE decider_outcome SET outcome = '{"v":2}'`);
  assert.equal(await seen(), '{"v":2}', 'a new outcome is read');
  assert.equal(await seen(), '{"v":2}');
  assert.deepEqual(outcomes, [null, '{"v":1}', null, '{"v":2}', null], 'its text is sent only when it changed');
});

test('a decider that resigns says so on the change feed, and another node takes the lease at once', async (t) => {
  const url = await createDatabase(cluster!.url, 'decider_resign');
  const x = await node(url, 'x');
  const y = await node(url, 'y');
  t.after(async () => {
    await x.store.close();
    await y.store.close();
  });
  const heard = collect(y.store);
  const { term } = await x.store.decider!.hold(x.me, 30);
  assert.ok(term !== null);
  const waiting = await y.store.decider!.hold(y.me, 30);
  assert.ok(waiting.term === null && waiting.heldForMs > 29_000, 'y is told the lease runs for half a minute more');
  await x.store.decider!.resign('x', term);
  await heard.next((c) => c.kind === 'resigned');
  assert.deepEqual(await y.store.decider!.hold(y.me, 30), { term: term + 1 }, 'y takes it over at once, in a new term');
  await x.store.decider!.resign('x', term);
  await x.store.jobs.insert(newJob({ id: 'barrier' }));
  await heard.next((c) => c.kind === 'job' && c.jobId === 'barrier');
  assert.equal(heard.changes.filter((c) => c.kind === 'resigned').length, 1, 'a resignation of a term no longer held says nothing');
});
