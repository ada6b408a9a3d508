import type pg from 'pg';
import type { WarnLog } from './db.js';
import { CHANNEL, write } from './db.js';

/** How often the jobs whose logs grew are announced (a remote follower's extra delay at most). */
export const LOG_ANNOUNCE_MS = 250;
/** A notification's payload is at most 8000 bytes: the jobs of one interval go in as many as they need. */
const PAYLOAD_MAX = 7_000;

/**
 * Tells the other nodes whose logs grew, at most once per interval: one
 * notification (more only when the names do not fit in one) names every
 * job that stored records since the last, with its highest stored seq. A
 * follower woken so reads from its own offset, so it sees every record
 * however many flushes one wake-up stands for. Sent only after the writes it
 * names committed (append resolved first); a notification that fails keeps
 * its jobs for the next interval, so no wake-up is lost while the pool
 * answers, and the change feed's resync covers an outage of the listener.
 */
export class LogAnnouncer {
  private readonly pending = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private sending: Promise<void> | null = null;

  constructor(
    private readonly pool: pg.Pool,
    private readonly origin: string,
    private readonly intervalMs = LOG_ANNOUNCE_MS,
    private readonly log?: WarnLog,
  ) {}

  /** Records up to `lastSeq` of the job are stored and committed. */
  note(jobId: string, lastSeq: number): void {
    this.pending.set(jobId, Math.max(lastSeq, this.pending.get(jobId) ?? 0));
    if (this.timer === null && this.sending === null) {
      this.timer = setTimeout(() => void this.flush(), this.intervalMs);
      this.timer.unref();
    }
  }

  /** Sends what is pending now (the store's close: a follower elsewhere still hears of the last records). */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.sending) await this.sending;
    if (this.pending.size === 0) return;
    const batch = [...this.pending];
    this.pending.clear();
    this.sending = this.send(batch).finally(() => {
      this.sending = null;
      if (this.pending.size > 0 && this.timer === null) {
        this.timer = setTimeout(() => void this.flush(), this.intervalMs);
        this.timer.unref();
      }
    });
    await this.sending;
  }

  private async send(batch: [string, number][]): Promise<void> {
    for (const payload of payloads(this.origin, batch)) {
      try {
        await write(this.pool, { name: 'gantry_log_announce', text: `SELECT pg_notify($1, $2)`, values: [CHANNEL, payload.text] });
      } catch (err) {
        for (const [jobId, seq] of payload.jobs) this.pending.set(jobId, Math.max(seq, this.pending.get(jobId) ?? 0));
        this.log?.warn({ err }, 'could not announce new log records to the other nodes; trying again');
        return;
      }
    }
  }
}

/** The payloads announcing a batch: `{o, k: 'logs', j: [[jobId, lastSeq], ...]}`, each under PAYLOAD_MAX bytes. */
function payloads(origin: string, batch: [string, number][]): { text: string; jobs: [string, number][] }[] {
  const out: { text: string; jobs: [string, number][] }[] = [];
  const base = JSON.stringify({ o: origin, k: 'logs', j: [] }).length;
  let jobs: [string, number][] = [];
  let size = base;
  for (const entry of batch) {
    const cost = Buffer.byteLength(JSON.stringify(entry)) + 1;
    if (jobs.length > 0 && size + cost > PAYLOAD_MAX) {
      out.push({ text: JSON.stringify({ o: origin, k: 'logs', j: jobs }), jobs });
      jobs = [];
      size = base;
    }
    jobs.push(entry);
    size += cost;
  }
  if (jobs.length > 0) out.push({ text: JSON.stringify({ o: origin, k: 'logs', j: jobs }), jobs });
  return out;
}
