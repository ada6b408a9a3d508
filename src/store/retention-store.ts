import type { JobRecord } from './job-record.js';

/** One attempt's GPU time, kept after its job's record was pruned (usage accounting reads it). */
export interface UsageInterval {
  jobId: string;
  owner: string;
  attempt: number;
  gpus: readonly string[];
  /** ISO times: the container's start and the attempt's end. */
  startedAt: string;
  endedAt: string;
}

/**
 * What retention deletes, a batch at a time, so that a sweep's cost follows
 * what is due rather than the history: each call does at most `limit` jobs'
 * worth and says how many, and nothing already deleted is looked at again.
 */
export interface RetentionStore {
  /** The ISO time `days` before now by the store's clock (in a fleet the database's, which every node shares). */
  cutoff(days: number): Promise<string>;
  /**
   * Deletes the logs of up to `limit` jobs that finished before the cutoff
   * (ISO time) and after those of earlier calls: the store keeps the point
   * the last call reached, so a log is deleted once. How many jobs; null,
   * having deleted nothing, when another process sharing the store is
   * deleting now (a fleet's nodes sweep one at a time).
   */
  pruneLogs(cutoffIso: string, limit: number): Promise<number | null>;
  /**
   * Deletes up to `limit` jobs that finished before the cutoff, oldest
   * first, with their labels and logs, keeping `usage(record)` of each in
   * the usage summary (JobStore.usageSources) in the same transaction. How
   * many; null as for pruneLogs.
   */
  pruneJobs(cutoffIso: string, limit: number, usage: (record: JobRecord) => UsageInterval[]): Promise<number | null>;
  /** Compacts what the store keeps to count jobs (JobStore.countByStateAndOwner), whether or not anyone reads the counts. */
  compactCounts(): Promise<void>;
}
