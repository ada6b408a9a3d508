/**
 * The fleet's change relay (fleet/change-relay.ts, fleet/relay-follower.ts)
 * against a real, throwaway PostgreSQL and real HTTP on loopback: node `a`
 * listens and relays, node `b` follows, node `w` writes. The invariants:
 * - while relayed, `b` holds no listening connection of its own;
 * - a handover made while `w` writes hears every job change once, in
 *   commit order: none lost, none told twice;
 * - a relay that ends, or goes silent, costs `b` no change: it listens
 *   again and reads back what it missed;
 * - only the token the decider published opens the stream, and only while
 *   the relay serves.
 */
import assert from 'node:assert/strict';
import { describe, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify from 'fastify';
import pg from 'pg';
import pino from 'pino';
import { problemHandlers } from '../../src/api/plugins/problem-handlers.js';
import { fleetChangeRoutes } from '../../src/api/routes/v1/fleet-changes.js';
import { ChangeRelay, RELAY_PATH } from '../../src/fleet/change-relay.js';
import { RelayFollower } from '../../src/fleet/relay-follower.js';
import { openPostgresStore } from '../../src/store/postgres/index.js';
import type { RelayableFeed, Store, StoreChange } from '../../src/store/store.js';
import { collectChanges } from '../helpers/changes.js';
import { clusterForFile } from '../helpers/postgres.js';
import { newJob } from '../helpers/records.js';

const { cluster, freshDatabase } = clusterForFile();
const quiet = pino({ level: 'silent' });

async function open(t: TestContext, url: string, node: string): Promise<Store & { relayableChanges: RelayableFeed }> {
  const store = await openPostgresStore({ url, node });
  t.after(() => store.close());
  assert.ok(store.relayableChanges, 'a PostgreSQL store can be relayed');
  return store as Store & { relayableChanges: RelayableFeed };
}

/** Node `a`'s relay, served over HTTP on loopback; its URL. */
async function serveRelay(t: TestContext, a: Store & { relayableChanges: RelayableFeed }, beatMs?: number) {
  const relay = new ChangeRelay(a.relayableChanges, beatMs);
  relay.setOpen(true);
  // The test's own fetch client leaves a connection the server's close would wait out (its keep-alive timeout).
  const app = Fastify({ forceCloseConnections: true });
  await app.register(problemHandlers);
  await app.register(fleetChangeRoutes, { relay });
  app.addHook('preClose', async () => relay.close());
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => app.close());
  return { relay, app, url };
}

/** The listening connections of node `node`'s feed. */
async function feedBackends(admin: pg.Client, node: string): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1`, [
    `gantry:${node}:feed`,
  ]);
  return rows[0]!.n;
}

async function adminClient(t: TestContext): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: cluster().url });
  await c.connect();
  t.after(() => c.end());
  return c;
}

async function until(what: string, ok: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The reasons heard for job `id`, in order: each write below sets a new one. */
const reasonsOf = (changes: readonly StoreChange[], id: string) =>
  changes.flatMap((c) => (c.kind === 'job' && c.jobId === id && c.record?.reason ? [c.record.reason] : []));

/** Writes reason w-0, w-1, … to job `id` one after another until stopped; the reasons written, in commit order. */
function writeOnAndOn(w: Store, id: string): { stop(): Promise<string[]> } {
  const written: string[] = [];
  let stopped = false;
  const loop = (async () => {
    for (let i = 0; !stopped; i++) {
      await w.jobs.update(id, { reason: `w-${i}` });
      written.push(`w-${i}`);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return written;
    },
  };
}

/** Node `a` relaying, `b` to follow it (every change it hears collected), `w` to write; and an admin connection. */
async function threeNodes(t: TestContext) {
  const url = await freshDatabase();
  const a = await open(t, url, 'a');
  const b = await open(t, url, 'b');
  const w = await open(t, url, 'w');
  const admin = await adminClient(t);
  const { relay, url: relayUrl } = await serveRelay(t, a);
  return { a, b, w, admin, relay, relayUrl, heard: collectChanges(b) };
}

describe('the fleet change relay', () => {
  test('a handover under writes: the follower stops listening, and hears every change once, in commit order', async (t) => {
    const { b, w, admin, relay, relayUrl, heard } = await threeNodes(t);
    await w.jobs.insert(newJob({ id: 'busy' }));
    await heard.next((c) => c.kind === 'job' && c.jobId === 'busy');

    const writes = writeOnAndOn(w, 'busy');
    await until('some writes', () => reasonsOf(heard.changes, 'busy').length >= 20);
    const follower = new RelayFollower(b.relayableChanges, quiet);
    t.after(() => follower.stop());
    follower.follow(relay.offer(relayUrl));
    await until('the follower relayed', () => follower.following() && relay.followers() === 1);
    await until('b’s own listening connection closed', async () => (await feedBackends(admin, 'b')) === 0);
    const before = reasonsOf(heard.changes, 'busy').length;
    await until('writes heard through the relay', () => reasonsOf(heard.changes, 'busy').length >= before + 20);
    const written = await writes.stop();
    await until('the last write heard', () => reasonsOf(heard.changes, 'busy').at(-1) === written.at(-1));

    assert.deepEqual(reasonsOf(heard.changes, 'busy'), written, 'every write heard once, in the order it committed');
    assert.equal(await feedBackends(admin, 'b'), 0, 'b holds no listening connection while relayed');
    assert.equal(await feedBackends(admin, 'a'), 1, 'the relay listens');
    const cached = await b.jobs.get('busy');
    assert.equal(cached?.reason, written.at(-1), 'b’s record of the job is the last write');
  });

  test('a relay that ends: the follower listens again and reads back what it missed', async (t) => {
    const { b, w, admin, relay, relayUrl, heard } = await threeNodes(t);
    const follower = new RelayFollower(b.relayableChanges, quiet);
    t.after(() => follower.stop());
    follower.follow(relay.offer(relayUrl));
    await until('b relayed', async () => follower.following() && (await feedBackends(admin, 'b')) === 0);

    const writes = writeOnAndOn(w, (await w.jobs.insert(newJob({ id: 'busy' }))).record.id);
    await until('writes heard through the relay', () => reasonsOf(heard.changes, 'busy').length >= 10);
    // The relay stops relaying (its node no longer decides) while w writes on.
    relay.setOpen(false);
    await until('b listens itself again', async () => (await feedBackends(admin, 'b')) === 1);
    await w.jobs.insert(newJob({ id: 'after' }));
    const written = await writes.stop();
    await heard.next((c) => c.kind === 'job' && c.jobId === 'after');
    await until('the last write heard', () => reasonsOf(heard.changes, 'busy').at(-1) === written.at(-1));

    // Read back after the loss, a job's changes may come as its latest record alone, but never out of order.
    const reasons = reasonsOf(heard.changes, 'busy').map((r) => Number(r?.slice(2)));
    for (let i = 1; i < reasons.length; i++) assert.ok(reasons[i]! >= reasons[i - 1]!, `heard in order: ${reasons.join(',')}`);
    assert.equal((await b.jobs.get('busy'))?.reason, written.at(-1));
    assert.equal(relay.serving(), false);
  });

  test('a silent relay is given up: the follower listens again', async (t) => {
    const url = await freshDatabase();
    const a = await open(t, url, 'a');
    const b = await open(t, url, 'b');
    const admin = await adminClient(t);
    // A relay that beats every minute, and a follower that waits a second for a line.
    const { relay, url: relayUrl } = await serveRelay(t, a, 60_000);
    const heard = collectChanges(b);
    const follower = new RelayFollower(b.relayableChanges, quiet, 1_000);
    t.after(() => follower.stop());
    follower.follow(relay.offer(relayUrl));
    await until('b relayed', async () => follower.following() && (await feedBackends(admin, 'b')) === 0);
    await until('b listens itself again', async () => (await feedBackends(admin, 'b')) === 1, 10_000);
    await a.jobs.insert(newJob({ id: 'later' }));
    await heard.next((c) => c.kind === 'job' && c.jobId === 'later');
  });

  test('only the published token opens the stream, and only while the relay serves', async (t) => {
    const url = await freshDatabase();
    const a = await open(t, url, 'a');
    const { relay, url: relayUrl } = await serveRelay(t, a);
    const streams = new AbortController();
    t.after(() => streams.abort());
    const get = (token: string | null) =>
      fetch(new URL(RELAY_PATH, relayUrl), {
        headers: token === null ? {} : { authorization: `Bearer ${token}` },
        signal: streams.signal,
      });
    for (const token of [null, 'wrong', `${relay.token}x`, relay.token.slice(1)]) {
      const res = await get(token);
      assert.equal(res.status, 401, `token ${token}`);
      assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
      await res.body?.cancel();
    }
    relay.setOpen(false);
    const closed = await get(relay.token);
    assert.equal(closed.status, 503);
    assert.equal(((await closed.json()) as { type: string }).type.endsWith('relay-unavailable'), true);
    relay.setOpen(true);
    const open_ = await get(relay.token);
    assert.equal(open_.status, 200);
    const reader = open_.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.equal(first, '{"k":"hello"}\n');
    streams.abort();
  });
});
