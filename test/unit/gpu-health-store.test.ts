import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { GpuHealthBook } from '../../src/gpu/health/state.js';
import { openPostgresStore } from '../../src/store/postgres/index.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { Store } from '../../src/store/store.js';
import { tempDir } from '../helpers/gantry.js';
import { createDatabase, startPostgres, type TestPostgres } from '../helpers/postgres.js';

const CARDS = [
  { index: 0, uuid: 'GPU-bf882557-d398-ec5a-a348-119f2369fb41', name: 'NVIDIA H200', memoryMiB: 143771 },
  { index: 1, uuid: 'GPU-aa694fa2-111c-4524-7ac7-efa2ec117766', name: 'NVIDIA H200', memoryMiB: 143771 },
];
const [U0, U1] = [CARDS[0]!.uuid, CARDS[1]!.uuid];
const quiet = { warn() {} };

let cluster: TestPostgres;
before(async () => {
  cluster = await startPostgres();
});
after(() => cluster.destroy());

/** Drains one card and faults the other through one store, then reads both back through a second store on the same data. */
async function keptAcrossReopen(open: () => Promise<Store>): Promise<void> {
  const first = await open();
  const book = new GpuHealthBook(CARDS, first.settings, quiet);
  await book.load();
  await book.drain(U0, 'alice', 'reseating');
  await book.fault(U1, { code: 'ecc_uncorrected', reason: '2 uncorrectable ECC error(s)' });
  await first.close();

  const second = await open();
  const back = new GpuHealthBook(CARDS, second.settings, quiet);
  await back.load();
  assert.deepEqual([back.get(U0).state, back.get(U0).by, back.get(U0).reason], ['drained', 'alice', 'reseating']);
  assert.deepEqual([back.get(U1).state, back.get(U1).code], ['unhealthy', 'ecc_uncorrected']);
  assert.equal(back.get(U1).since, book.get(U1).since);
  await back.undrain(U1);
  await second.close();

  const third = await open();
  const again = new GpuHealthBook(CARDS, third.settings, quiet);
  await again.load();
  assert.deepEqual([again.get(U0).state, again.get(U1).state], ['drained', 'healthy']);
  await third.close();
}

test('GPU health outlives a restart on the embedded SQLite store', async () => {
  const dir = tempDir();
  await keptAcrossReopen(() => openSqliteStore(dir, 'node-a'));
});

test('GPU health outlives a restart on PostgreSQL', async () => {
  const url = await createDatabase(cluster.url, `gpuhealth${process.pid}`);
  await keptAcrossReopen(() => openPostgresStore({ url, node: 'node-a', log: quiet }));
});
