/**
 * The AuditStore contract (src/store/store.ts), run against both stores: the
 * embedded SQLite file and a real, throwaway PostgreSQL (a fresh database per
 * test). Append, list newest first with each filter, cursor pages, retention's
 * delete, and a record that the schema itself refuses to change.
 */
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NewAuditRecord } from '../../src/model/audit.js';
import type { AuditStore } from '../../src/store/store.js';
import { type OpenStore, onBothStores } from '../helpers/stores.js';

interface Opened {
  audit: AuditStore;
  /** Runs a statement on a connection of the test's own, outside the store. */
  raw(sql: string): Promise<void>;
}

const record = (o: Partial<NewAuditRecord> = {}): NewAuditRecord => ({
  node: 'gpu-1',
  actor: 'airflow',
  action: 'job.submit',
  target: 'job-1',
  outcome: 'ok',
  status: 201,
  problemType: null,
  requestId: 'req-1',
  clientRequestId: null,
  detail: {},
  ...o,
});

/** A time strictly between the records appended before and after it (records carry milliseconds). */
async function instant(): Promise<string> {
  await sleep(5);
  const at = new Date().toISOString();
  await sleep(5);
  return at;
}

function contract(open: (t: TestContext) => Promise<Opened>): void {
  test('append and list: every field kept, the store’s seq and time, newest first, frozen', async (t) => {
    const { audit } = await open(t);
    const before = Date.now();
    await audit.append(record());
    await audit.append(
      record({
        actor: null,
        action: 'job.submit',
        target: null,
        outcome: 'refused',
        status: 422,
        problemType: 'https://gantry.dev/problems/policy',
        requestId: 'req-2',
        clientRequestId: 'airflow-task-7',
        detail: { fields: ['body.image', 'body.env.API_KEY'] },
      }),
    );
    await audit.append(
      record({ actor: null, action: 'config.reload', target: 'tls', status: null, requestId: null, detail: { signal: 'SIGHUP' } }),
    );
    const items = await audit.list({ limit: 10 });
    assert.equal(items.length, 3);
    const [third, second, first] = items as [(typeof items)[0], (typeof items)[0], (typeof items)[0]];
    assert.ok(first.seq < second.seq && second.seq < third.seq, 'seq grows in writing order');
    const { seq: _s, at, ...rest } = second;
    assert.deepEqual(rest, {
      node: 'gpu-1',
      actor: null,
      action: 'job.submit',
      target: null,
      outcome: 'refused',
      status: 422,
      problemType: 'https://gantry.dev/problems/policy',
      requestId: 'req-2',
      clientRequestId: 'airflow-task-7',
      detail: { fields: ['body.image', 'body.env.API_KEY'] },
    });
    assert.match(at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(Date.parse(first.at) >= before - 1000 && Date.parse(third.at) <= Date.now() + 1000, 'at is now, by the store’s clock');
    assert.deepEqual(third.detail, { signal: 'SIGHUP' });
    assert.equal(third.status, null);
    assert.ok(Object.isFrozen(first) && Object.isFrozen(first.detail));
  });

  test('list: each filter alone, and together', async (t) => {
    const { audit } = await open(t);
    await audit.append(record({ actor: 'airflow', action: 'job.submit', target: 'j1' }));
    const t1 = await instant();
    await audit.append(record({ actor: 'airflow', action: 'job.cancel', target: 'j1', status: 202 }));
    await audit.append(record({ actor: null, action: 'job.submit', target: null, outcome: 'refused', status: 401 }));
    const t2 = await instant();
    await audit.append(record({ actor: 'admin', action: 'node.drain', target: 'gpu-1', status: 200 }));
    await audit.append(record({ actor: 'admin', action: 'node.undrain', target: 'gpu-1', outcome: 'failed', status: 503 }));

    const pick = async (f: Parameters<AuditStore['list']>[0]) => (await audit.list(f)).map((r) => `${r.action}:${r.target}`);
    assert.deepEqual(await pick({ actor: 'airflow', limit: 10 }), ['job.cancel:j1', 'job.submit:j1']);
    assert.deepEqual(await pick({ action: 'job.submit', limit: 10 }), ['job.submit:null', 'job.submit:j1']);
    assert.deepEqual(await pick({ target: 'gpu-1', limit: 10 }), ['node.undrain:gpu-1', 'node.drain:gpu-1']);
    assert.deepEqual(await pick({ outcome: 'refused', limit: 10 }), ['job.submit:null']);
    assert.deepEqual(await pick({ outcome: 'failed', limit: 10 }), ['node.undrain:gpu-1']);
    assert.deepEqual(await pick({ from: t1, limit: 10 }), ['node.undrain:gpu-1', 'node.drain:gpu-1', 'job.submit:null', 'job.cancel:j1']);
    assert.deepEqual(await pick({ to: t1, limit: 10 }), ['job.submit:j1']);
    assert.deepEqual(await pick({ from: t1, to: t2, limit: 10 }), ['job.submit:null', 'job.cancel:j1']);
    assert.deepEqual(await pick({ actor: 'admin', action: 'node.drain', target: 'gpu-1', outcome: 'ok', from: t2, limit: 10 }), [
      'node.drain:gpu-1',
    ]);
    assert.deepEqual(await pick({ actor: 'nobody', limit: 10 }), []);
  });

  test('list: cursor pages of the given size cover every record once, newest first', async (t) => {
    const { audit } = await open(t);
    for (let i = 1; i <= 7; i++) await audit.append(record({ target: `j${i}` }));
    const seen: string[] = [];
    let beforeSeq: number | undefined;
    for (;;) {
      const page = await audit.list({ limit: 3, beforeSeq });
      assert.ok(page.length <= 3);
      seen.push(...page.map((r) => r.target!));
      if (page.length < 3) break;
      beforeSeq = page.at(-1)!.seq;
    }
    assert.deepEqual(seen, ['j7', 'j6', 'j5', 'j4', 'j3', 'j2', 'j1']);
    const filtered = await audit.list({ target: 'j2', beforeSeq: (await audit.list({ limit: 1 }))[0]!.seq, limit: 3 });
    assert.deepEqual(
      filtered.map((r) => r.target),
      ['j2'],
    );
  });

  test('deleteOlderThan: records written more than the days ago go, later ones stay; many go in one call', async (t) => {
    const { audit, raw } = await open(t);
    // Written around the store, which stamps a record with its own clock.
    const old = Array.from({ length: 2_100 }, (_, i) => `('2000-01-01T00:00:00.000Z', 'gpu-1', 'job.submit', 'old-${i}', 'ok', '{}')`);
    await raw(`INSERT INTO audit (at, node, action, target, outcome, detail) VALUES ${old.join(', ')}`);
    await audit.append(record({ target: 'new' }));
    assert.equal(await audit.deleteOlderThan(30), 2_100);
    assert.deepEqual(
      (await audit.list({ limit: 10 })).map((r) => r.target),
      ['new'],
    );
    assert.equal(await audit.deleteOlderThan(30), 0, 'a second sweep finds nothing');
    await audit.append(record({ target: 'newer' }));
    const [newer, kept] = await audit.list({ limit: 10 });
    assert.ok(newer!.seq > kept!.seq, 'a seq is never given again');
  });

  test('append-only: the schema refuses to change a record, whoever asks', async (t) => {
    const { audit, raw } = await open(t);
    await audit.append(record({ outcome: 'refused', status: 403 }));
    await assert.rejects(raw(`UPDATE audit SET outcome = 'ok'`), /append-only/);
    assert.equal((await audit.list({ limit: 1 }))[0]!.outcome, 'refused');
  });
}

const auditOf =
  (open: OpenStore) =>
  async (t: TestContext): Promise<Opened> => {
    const { store, raw } = await open(t);
    return { audit: store.audit, raw };
  };

onBothStores('audit store', (open) => contract(auditOf(open)), {
  postgres: (open) => {
    test("a node whose clock runs ahead deletes no record early: the cutoff is the database's clock", async (t) => {
      const { store } = await open(t);
      await store.audit.append(record({ target: 'fresh' }));
      const now = Date.now;
      Date.now = () => now() + 400 * 86_400_000;
      try {
        assert.equal(await store.audit.deleteOlderThan(30), 0);
      } finally {
        Date.now = now;
      }
      assert.deepEqual(
        (await store.audit.list({ limit: 10 })).map((r) => r.target),
        ['fresh'],
      );
    });

    test('a NUL in a path-given target is kept as U+FFFD rather than failing the write', async (t) => {
      const { store } = await open(t);
      await store.audit.append(record({ target: 'a\u0000b', detail: { fields: ['params.\u0000'] } }));
      const [r] = await store.audit.list({ limit: 1 });
      assert.equal(r!.target, 'a\uFFFDb');
      assert.deepEqual(r!.detail, { fields: ['params.\uFFFD'] });
      assert.equal((await store.audit.list({ target: 'a\u0000b', limit: 1 })).length, 1, 'a filter is matched the same way');
    });
  },
});
