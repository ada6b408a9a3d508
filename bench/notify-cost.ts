/**
 * What one LISTEN/NOTIFY delivery costs PostgreSQL, apart from Gantry: a
 * throwaway cluster, N idle connections listening on one channel, one
 * sender making 1,000 NOTIFYs of 2 KB (about a job row's announcement),
 * and the CPU of the server's processes over them. Each N is measured
 * twice, alternating. It shows how the fleet's change feed scales: every
 * node listens, so a notification costs every node's backend a wake-up
 * (docs/performance.md, "After: announcements that carry the row").
 * Usage: [NOTIFY_LISTENERS=1,100] node --import tsx bench/notify-cost.ts
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import pg from 'pg';
import { startPostgres } from '../test/helpers/postgres.js';
import { sleep } from './lib/util.js';

const NOTIFIES = 1000;
const PAYLOAD_BYTES = 2000;

/** CPU seconds (user + system) of every process the postgres user runs. */
function postgresCpuSeconds(): number {
  const pids = execFileSync('pgrep', ['-u', 'postgres'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // A process that ended meanwhile.
    }
  }
  return ticks / 100;
}

async function measure(url: string, listeners: number): Promise<void> {
  let delivered = 0;
  const clients = await Promise.all(
    Array.from({ length: listeners }, async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query('LISTEN bench');
      c.on('notification', () => delivered++);
      return c;
    }),
  );
  const sender = new pg.Client({ connectionString: url });
  await sender.connect();
  try {
    await sleep(500);
    const before = postgresCpuSeconds();
    for (let i = 0; i < NOTIFIES; i++) {
      await sender.query(`SELECT pg_notify('bench', $1)`, [`${'x'.repeat(PAYLOAD_BYTES)}${i}`]);
      if (i % 10 === 0) await sleep(5);
    }
    await sleep(1000);
    const cpu = postgresCpuSeconds() - before;
    console.log(
      `${listeners} listeners: ${NOTIFIES} notifications, ${delivered} delivered, PostgreSQL CPU ${cpu.toFixed(2)} s, ` +
        `${((cpu / NOTIFIES) * 1e6).toFixed(0)} µs per notification`,
    );
  } finally {
    await Promise.all([...clients, sender].map((c) => c.end()));
  }
}

const counts = (process.env.NOTIFY_LISTENERS ?? '1,100').split(',').map(Number);
const db = await startPostgres(null);
try {
  for (let round = 0; round < 2; round++) for (const n of counts) await measure(db.url, n);
} finally {
  await db.destroy();
}
