/**
 * Liveness that load and faults cannot fake, on real PostgreSQL with the
 * membership of each node in this process (src/fleet/membership.ts) and a
 * Toxiproxy link in front of the database for the nodes whose link a test
 * breaks:
 * - a pool held by slow queries never delays the lease (it is renewed on a
 *   connection of its own);
 * - a node whose link freezes stops starting work before the others
 *   declare it lost, then rejoins once the link heals;
 * - an observer left alone with the database while the rest of the fleet is
 *   cut off declares no one lost (the brake), and the others carry on with
 *   their seats once back.
 */
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { NodeMembership } from '../../src/fleet/membership.js';
import { createPool } from '../../src/store/postgres/db.js';
import { openPostgresStore } from '../../src/store/postgres/index.js';
import { LeaseLink } from '../../src/store/postgres/lease-link.js';
import { PgNodeStore } from '../../src/store/postgres/nodes.js';
import { RecordCache } from '../../src/store/postgres/record-cache.js';
import type { NodeRecord, Store } from '../../src/store/store.js';
import { eventually } from '../helpers/fleet.js';
import { createDatabase, startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startToxiproxy, type Toxiproxy } from '../helpers/toxiproxy.js';

const LEASE = 3;

interface Member {
  membership: NodeMembership;
  store: Store;
  /** Every message the node logged. */
  logs: string[];
  braked: number;
}

/** Node `name` on `url`, joined and beating; stopped and closed after the test. */
async function member(t: TestContext, url: string, name: string, store?: Store): Promise<Member> {
  const s = store ?? (await openPostgresStore({ url, node: name, leaseSeconds: LEASE }));
  const logs: string[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line).msg) });
  const m: Member = { membership: undefined as unknown as NodeMembership, store: s, logs, braked: 0 };
  m.membership = new NodeMembership({
    store: s,
    info: { name, labels: {}, gpus: [], version: 'test', leaseSeconds: LEASE },
    shared: true,
    log,
    onBraked: () => m.braked++,
  });
  t.after(async () => {
    m.membership.stop();
    await s.close();
  });
  await m.membership.join();
  m.membership.start();
  return m;
}

async function state(observer: Member, name: string): Promise<NodeRecord> {
  const n = await observer.store.nodes.get(name);
  assert.ok(n, `node ${name} is registered`);
  return n;
}

/** A fresh database and a Toxiproxy server, both torn down after the test. */
async function setUp(t: TestContext): Promise<{ url: string; toxiproxy: Toxiproxy }> {
  const cluster: TestPostgres = await startPostgres(t);
  return { url: await createDatabase(cluster.url, 'liveness'), toxiproxy: await startToxiproxy(t) };
}

test('fleet liveness', { timeout: 180_000 }, async (t) => {
  await t.test('a pool held by slow queries does not delay the lease: no other node declares the node lost', async (t) => {
    const { url } = await setUp(t);
    const observer = await member(t, url, 'observer');
    // The node's store as openPostgresStore wires it, with its pool at hand to exhaust.
    const pool = createPool({ url, node: 'busy', leaseSeconds: LEASE });
    const nodes = new PgNodeStore(pool, 'busy', new LeaseLink(url, 'busy', LEASE), new RecordCache());
    const busy = await member(t, url, 'busy', {
      nodes,
      close: async () => pool.end(),
    } as unknown as Store);
    // The observer expires others only after a whole lease of its own renewals.
    await sleep(LEASE * 1000 + 500);

    // Every pooled connection sleeps for one and a half leases (under the pool's statement timeout of two).
    let held = true;
    const hold = Promise.all(Array.from({ length: 10 }, () => pool.query('SELECT pg_sleep($1)', [LEASE * 1.5]))).finally(() => {
      held = false;
    });
    await eventually('every pooled connection is busy', async () => (pool.totalCount === 10 && pool.idleCount === 0 ? true : undefined));
    // The node's own pooled work (its record read again, as after a drain) queues behind them meanwhile.
    const refreshed = busy.membership.refresh();
    const states: string[] = [];
    let oldest = 0;
    let exhausted = false;
    while (held) {
      const n = await state(observer, 'busy');
      states.push(n.state);
      oldest = Math.max(oldest, n.heartbeatAgeSeconds);
      exhausted ||= pool.waitingCount > 0;
      await sleep(100);
    }
    await hold;
    await refreshed;
    assert.ok(exhausted, 'the node itself waited for a pooled connection meanwhile');
    assert.ok(
      states.every((s) => s === 'up'),
      `the node stayed up: ${states.join(',')}`,
    );
    assert.ok(oldest < LEASE, `its lease never ran out (oldest heartbeat seen: ${oldest} s)`);
    assert.notEqual(busy.membership.epoch(), null);
  });

  await t.test(
    'a node whose link freezes past its lease stops starting work before the others declare it lost, then rejoins',
    async (t) => {
      const { url, toxiproxy } = await setUp(t);
      const link = await toxiproxy.link('frozen', url);
      const b = await member(t, url, 'b');
      await member(t, url, 'c');
      const a = await member(t, link.url, 'a');
      const epoch = a.membership.epoch();
      assert.notEqual(epoch, null);
      await sleep(LEASE * 1000 + 500);

      await link.freeze();
      let stoppedFirst: boolean | undefined;
      await eventually(
        'the others declare a lost',
        async () => {
          const holding = a.membership.epoch() !== null;
          if ((await state(b, 'a')).state !== 'lost') return undefined;
          stoppedFirst = !holding;
          return true;
        },
        LEASE * 4000,
      );
      assert.equal(stoppedFirst, true, 'a held no seat (started no work) by the time the fleet declared it lost');
      assert.ok(a.logs.includes('the lease was not renewed in time; this node starts no new job until it is'));

      await link.heal();
      const back = await eventually(
        'a rejoins with a new epoch',
        async () => {
          const e = a.membership.epoch();
          return e !== null && e > epoch! && (await state(b, 'a')).state === 'up' ? e : undefined;
        },
        LEASE * 4000,
      );
      assert.equal(back, epoch! + 1);
      // Cut off, a never counted as reachable, so once back it declared no one lost.
      for (const n of ['b', 'c']) assert.equal((await state(b, n)).state, 'up');
      assert.ok(!a.logs.includes('nodes declared lost: their leases expired'));
    },
  );

  await t.test('an observer left alone with the database declares no one lost when the rest of the fleet looks lost at once', async (t) => {
    const { url, toxiproxy } = await setUp(t);
    const observer = await member(t, url, 'observer');
    const links = await Promise.all(['b', 'c'].map((n) => toxiproxy.link(n, url)));
    const [b, c] = await Promise.all(links.map((l, i) => member(t, l.url, ['b', 'c'][i]!)));
    const epochs = [b!.membership.epoch(), c!.membership.epoch()];
    await sleep(LEASE * 1000 + 500);

    await Promise.all(links.map((l) => l.cut()));
    await eventually('the brake holds', async () => (observer.braked > 0 ? true : undefined), LEASE * 4000);
    // Another whole lease of braking: still no one declared lost.
    await sleep(LEASE * 1000);
    for (const n of ['b', 'c']) assert.equal((await state(observer, n)).state, 'up', `${n} was not declared lost`);
    assert.ok(observer.logs.some((m) => m.startsWith('more than half of the other nodes look lost at once')));
    assert.equal(b!.membership.epoch(), null, 'b, cut off, starts no work meanwhile');

    await Promise.all(links.map((l) => l.heal()));
    await eventually(
      'b and c hold their seats again, with the epochs they had',
      async () => (b!.membership.epoch() === epochs[0] && c!.membership.epoch() === epochs[1] ? true : undefined),
      LEASE * 4000,
    );
    for (const n of ['b', 'c']) assert.equal((await state(observer, n)).state, 'up');
  });
});
