import type { Logger } from 'pino';
import type { AuditStore } from '../store/store.js';

const SWEEP_MS = 60 * 60 * 1000;

/**
 * Deletes, at start and every hour, the audit records written more than
 * `days` ago (GANTRY_AUDIT_RETENTION_DAYS; 0 keeps every record), by the
 * store's clock: in a fleet PostgreSQL's, so a node whose clock runs ahead
 * deletes nothing early. Kept apart from log retention: an audit trail is
 * usually kept longer than job output. Returns a stopper.
 */
export function startAuditRetention(o: { audit: AuditStore; days: number; log: Logger }): () => void {
  if (o.days === 0) return () => undefined;
  const sweep = async () => {
    try {
      const records = await o.audit.deleteOlderThan(o.days);
      if (records) o.log.info({ records, days: o.days }, 'deleted old audit records');
    } catch (err) {
      o.log.error({ err }, 'audit retention sweep failed');
    }
  };
  void sweep();
  const timer = setInterval(() => void sweep(), SWEEP_MS);
  timer.unref();
  return () => clearInterval(timer);
}
