import type { Server } from 'node:tls';
import closeWithGrace from 'close-with-grace';
import { auditWriter } from './api/plugins/audit.js';
import { reloadTls } from './api/tls.js';
import { buildApp } from './app.js';
import { reloadTokens } from './auth/tokens.js';
import { ConfigError, loadConfig } from './config.js';
import { flushLog } from './logging.js';
import type { NewAuditRecord } from './model/audit.js';
import { readQuotasFile } from './scheduling/quotas.js';

/** The longest reason a failed reload's audit record keeps. */
const MAX_ERROR_LENGTH = 500;

/** The audit record of a reload asked by a signal: no token, no request. `target` is what was reloaded (null: nothing to). */
function reloadRecord(node: string, target: string | null, err?: unknown): NewAuditRecord {
  return {
    node,
    actor: null,
    action: 'config.reload',
    target,
    outcome: err === undefined ? 'ok' : 'failed',
    status: null,
    problemType: null,
    requestId: null,
    clientRequestId: null,
    detail:
      err === undefined
        ? { signal: 'SIGHUP' }
        : { signal: 'SIGHUP', error: String((err as Error)?.message ?? err).slice(0, MAX_ERROR_LENGTH) },
  };
}

async function main(): Promise<void> {
  const config = loadConfig();
  // buildApp reads the files and lists the configuration names (tokens,
  // registry auth, a static GPU list, the node's name in the data dir):
  // their errors are ConfigErrors too.
  const app = await buildApp(config);
  // SIGTERM/SIGINT: stop accepting, finish requests in flight, and leave
  // running containers alone (the next start re-attaches to them).
  // SIGHUP means "reload", not "stop" (systemd's ExecReload sends it).
  closeWithGrace({ delay: 10_000, skip: ['SIGHUP'] }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'fatal error, shutting down');
    else app.log.info({ signal }, 'shutting down; running containers are left running');
    await app.close();
    // The process log is written asynchronously (src/logging.ts): hand what
    // is queued to stdout before close-with-grace exits.
    await flushLog(app.gantry.log);
  });
  await app.listen({ host: config.host, port: config.port });
  // SIGHUP re-reads the tokens and quotas files (tokens added or revoked
  // and limits changed need no restart) and the TLS certificate, key and client CA (nor does a renewed
  // certificate); files that cannot be used are logged and the ones in use
  // are kept. Each reload, done or not, is in the audit trail.
  const { tls } = config;
  const { store, metrics, log, tokens, quotas } = app.gantry;
  const audit = auditWriter({ audit: store.audit, metrics, log });
  // The name buildApp settled (GANTRY_NODE_NAME, or the one kept in the data dir).
  const node = app.gantry.config.node.name;
  process.on('SIGHUP', () => {
    if (!tls && !config.tokensFile && !config.quotasFile) {
      app.log.info('SIGHUP: nothing to reload (no GANTRY_TOKENS_FILE, GANTRY_QUOTAS_FILE or GANTRY_TLS_CERT)');
      void audit(reloadRecord(node, null));
      return;
    }
    if (config.tokensFile) {
      try {
        reloadTokens(tokens, { adminToken: config.adminToken, tokensFile: config.tokensFile });
        app.log.info({ file: config.tokensFile }, 'tokens reloaded');
        void audit(reloadRecord(node, 'tokens'));
      } catch (err) {
        app.log.error({ err }, 'tokens not reloaded; the ones in use stay');
        void audit(reloadRecord(node, 'tokens', err));
      }
    }
    if (config.quotasFile) {
      try {
        quotas.replace(readQuotasFile(config.quotasFile));
        app.log.info({ file: config.quotasFile }, 'quotas reloaded');
        void audit(reloadRecord(node, 'quotas'));
      } catch (err) {
        app.log.error({ err }, 'quotas not reloaded; the ones in use stay');
        void audit(reloadRecord(node, 'quotas', err));
      }
    }
    if (tls) {
      try {
        reloadTls(app.server as unknown as Server, tls);
        app.log.info({ cert: tls.certFile }, 'TLS certificate reloaded');
        void audit(reloadRecord(node, 'tls'));
      } catch (err) {
        app.log.error({ err }, 'TLS certificate not reloaded; the previous one stays in use');
        void audit(reloadRecord(node, 'tls', err));
      }
    }
  });
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
