import closeWithGrace from 'close-with-grace';
import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { flushLog } from './logging.js';

async function main(): Promise<void> {
  const config = loadConfig();
  // buildApp reads the files and lists the configuration names (tokens,
  // registry auth, a static GPU list): their errors are ConfigErrors too.
  const app = await buildApp(config);
  // SIGTERM/SIGINT: stop accepting, finish requests in flight, and leave
  // running containers alone (the next start re-attaches to them).
  closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'fatal error, shutting down');
    else app.log.info({ signal }, 'shutting down; running containers are left running');
    await app.close();
    // The process log is written asynchronously (src/logging.ts): hand what
    // is queued to stdout before close-with-grace exits.
    await flushLog(app.gantry.log);
  });
  await app.listen({ host: config.host, port: config.port });
}

main().catch((err: unknown) => {
  // The operator's to fix: one line per bad value, no stack trace, exit 2.
  if (err instanceof ConfigError) {
    process.stderr.write(err.problems.map((p) => `gantry: invalid configuration: ${p}\n`).join(''));
    process.exit(2);
  }
  process.stderr.write(`gantry: failed to start: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
