import { LRUCache } from 'lru-cache';
import type { JobRecord } from '../store.js';

/** Job records kept per node (about 1 KB each). */
const RECORDS_MAX = 4096;
/** Recent invalidations remembered per job; an older one is covered by `forgottenUpTo`. */
const DROPS_MAX = 16_384;
/**
 * How long a record of a running job holding GPUs is served: its telemetry
 * summary is written without an announcement (jobs.ts, updateQuery), so it
 * may lag by this much (GANTRY_GPU_SAMPLE_SECONDS's default interval).
 */
export const TELEMETRY_TTL_MS = 10_000;

/**
 * Job records kept in memory while the change feed vouches for them, so a
 * status poll of a running job costs no round trip to PostgreSQL.
 *
 * The rules it keeps:
 * - Every write to a job, by any node, is announced on the feed in the
 *   write's own transaction; each announcement drops the job's record here,
 *   and keeps the record it carries, if any: the feed hears announcements
 *   in commit order, so that record is the job's latest but for changes
 *   still being announced.
 * - Records are kept only while the feed's connection is up: when it drops,
 *   announcements may be missed, so everything is forgotten and nothing is
 *   kept until it is back.
 * - A record read (or written) before a drop of its job must not be kept
 *   after that drop: each read takes a ticket first, and a record is kept
 *   only if no drop of its job, and no loss of the feed, came after the ticket.
 * - The one write not announced is a running job's GPU telemetry summary
 *   (a sample every few seconds of every GPU job, which no other node acts
 *   on): a running job's record with GPUs is kept TELEMETRY_TTL_MS at most.
 * So a record served from here is at most as old as the announcement
 * latency (milliseconds), its telemetry at most TELEMETRY_TTL_MS; a compare-and-set that fails on one drops it
 * (the writer reads afresh), and nothing that must be exact relies on it.
 */
export class RecordCache {
  private readonly records = new LRUCache<string, JobRecord>({ max: RECORDS_MAX });
  /** The generation of each job's last drop. */
  private readonly drops: LRUCache<string, number>;
  private generation = 0;
  /** Drops forgotten by `drops` happened at or before this generation. */
  private forgottenUpTo = 0;
  /** Nothing kept before this generation may be kept (the feed was lost then). */
  private validFrom = 0;
  private live = false;

  constructor(private readonly telemetryTtlMs = TELEMETRY_TTL_MS) {
    this.drops = new LRUCache<string, number>({
      max: DROPS_MAX,
      dispose: (gen) => {
        this.forgottenUpTo = Math.max(this.forgottenUpTo, gen);
      },
    });
  }

  /** A ticket for a read about to be made: give it back to `keep`. */
  ticket(): number {
    return this.generation;
  }

  get(id: string): JobRecord | undefined {
    return this.live ? this.records.get(id) : undefined;
  }

  /** Keeps a record read with `ticket`, unless its job changed (or the feed was lost) since. */
  keep(record: JobRecord, ticket: number): JobRecord {
    if (!this.live || ticket < this.validFrom || ticket < this.forgottenUpTo) return record;
    const dropped = this.drops.get(record.id);
    if (dropped !== undefined && dropped > ticket) return record;
    const sampled = record.state === 'running' && record.gpus.length > 0;
    this.records.set(record.id, record, sampled ? { ttl: this.telemetryTtlMs } : undefined);
    return record;
  }

  /** The job changed (announced on the feed, or a compare-and-set on it failed). */
  drop(id: string): void {
    this.generation++;
    this.drops.set(id, this.generation);
    this.records.delete(id);
  }

  /** The feed announced a change of the job, carrying its record as changed (or null: none carried). */
  changed(id: string, record: JobRecord | null): void {
    this.drop(id);
    if (record !== null) this.keep(record, this.generation);
  }

  /** The feed's connection is up (true) or was lost (false): either way, what was kept is forgotten. */
  setLive(live: boolean): void {
    this.generation++;
    this.validFrom = this.generation;
    this.live = live;
    this.records.clear();
  }
}
