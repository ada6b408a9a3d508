// The baseline for status polls: a bare fastify 5 server with no hooks,
// no auth and no schemas, in its own process like Gantry. Plain JS, so no
// loader sits in front of it. Usage: node bench/bare-server.mjs PORT [SQLITE_FILE]

import Database from 'better-sqlite3';
import Fastify from 'fastify';

const port = Number(process.argv[2]);
const dbFile = process.argv[3];
const app = Fastify({ logger: false });

// A route returning small JSON.
app.get('/bare/jobs/:id', async (request) => ({ id: request.params.id, state: 'succeeded', exitCode: 0 }));

// The small-JSON route after a busy loop of :us microseconds: a bare route
// made to cost a given CPU time per request, to show what a poll's CPU alone
// does to its latency at saturation (the polls section's CPU-matched row).
app.get('/spin/:us/jobs/:id', async (request) => {
  const until = process.hrtime.bigint() + BigInt(Math.round(Number(request.params.us) * 1000));
  while (process.hrtime.bigint() < until);
  return { id: request.params.id, state: 'succeeded', exitCode: 0 };
});

// The same with one better-sqlite3 point read (of Gantry's seeded store, read-only).
if (dbFile) {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  const byId = db.prepare('SELECT id, state, exit_code AS exitCode FROM jobs WHERE id = ?');
  app.get('/bare-sqlite/jobs/:id', async (request, reply) => {
    const row = byId.get(request.params.id);
    if (!row) return reply.code(404).send({ error: 'not found' });
    return row;
  });
}

await app.listen({ host: '127.0.0.1', port });
process.stdout.write('ready\n');
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => app.close().then(() => process.exit(0)));
