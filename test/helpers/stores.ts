import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { openPostgresStore } from '../../src/store/postgres/index.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { Store } from '../../src/store/store.js';
import { createDatabase, queryOnce, startPostgres, type TestPostgres } from './postgres.js';

/** A store opened for one test, closed (and its data removed) after it. */
export interface OpenedStore {
  store: Store;
  /** Another store on the same database (SQLite: another connection; PostgreSQL: another node), closed after the test. */
  another(): Promise<Store>;
  /** Runs a statement on a connection of the test's own, outside the store (as an older Gantry, or another program, would). */
  raw(sql: string): Promise<void>;
}

export type OpenStore = (t: TestContext) => Promise<OpenedStore>;

/**
 * Runs a contract suite once on each store: `SQLite <name>` on a fresh data
 * dir per test, `PostgreSQL <name>` on a fresh database per test of one
 * throwaway cluster. `only` adds tests that hold for one store alone, in
 * that store's block.
 */
export function onBothStores(
  name: string,
  contract: (open: OpenStore) => void,
  only: { sqlite?: (open: OpenStore) => void; postgres?: (open: OpenStore) => void } = {},
): void {
  describe(`SQLite ${name}`, () => {
    const open: OpenStore = async (t) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-store-'));
      const store = await openSqliteStore(dir);
      t.after(async () => {
        await store.close();
        fs.rmSync(dir, { recursive: true, force: true });
      });
      return {
        store,
        async another() {
          const other = await openSqliteStore(dir);
          t.after(() => other.close());
          return other;
        },
        async raw(sql) {
          const db = new Database(path.join(dir, 'gantry.db'));
          try {
            db.exec(sql);
          } finally {
            db.close();
          }
        },
      };
    };
    contract(open);
    only.sqlite?.(open);
  });

  describe(`PostgreSQL ${name}`, () => {
    let cluster: TestPostgres;
    let databases = 0;
    before(async () => {
      cluster = await startPostgres();
    });
    after(() => cluster.destroy());
    const open: OpenStore = async (t) => {
      const url = await createDatabase(cluster.url, `t${process.pid}_${++databases}`);
      const store = await openPostgresStore({ url, node: 'gpu-1' });
      t.after(() => store.close());
      let others = 0;
      return {
        store,
        async another() {
          const other = await openPostgresStore({ url, node: `other-${++others}` });
          t.after(() => other.close());
          return other;
        },
        async raw(sql) {
          await queryOnce(url, sql);
        },
      };
    };
    contract(open);
    only.postgres?.(open);
  });
}
