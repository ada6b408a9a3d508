import type { JobRecord } from '../store/store.js';

type Place = Pick<JobRecord, 'priority' | 'seq'>;

/** A queued job in queue order: higher priority first, then first come, first served. Negative: `a` comes first. */
export const queueOrder = (a: Place, b: Place) => b.priority - a.priority || a.seq - b.seq;

/**
 * Queued jobs in queue order, kept sorted as they come and go, so that a
 * job's place is a binary search and a scheduling pass reads the head
 * without sorting or reading the rest. Inserting and removing move array
 * slots (a memmove), which stays far below a store read at the depths a
 * GPU host queues.
 */
export class QueueIndex {
  private readonly order: JobRecord[] = [];
  private readonly byId = new Map<string, JobRecord>();

  isEmpty(): boolean {
    return this.order.length === 0;
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  get(id: string): JobRecord | undefined {
    return this.byId.get(id);
  }

  /** Adds the job, or replaces what was known of it (its place follows its priority and seq). */
  put(record: JobRecord): void {
    this.delete(record.id);
    this.order.splice(this.slot(record), 0, record);
    this.byId.set(record.id, record);
  }

  delete(id: string): boolean {
    const known = this.byId.get(id);
    if (known === undefined) return false;
    this.order.splice(this.slot(known), 1);
    this.byId.delete(id);
    return true;
  }

  /** The job's place (0 is next), or null when it is not here. */
  position(id: string): number | null {
    const known = this.byId.get(id);
    return known === undefined ? null : this.slot(known);
  }

  /**
   * The jobs in queue order, from the head; a pass stops reading where it
   * has decided enough. The queue may change between steps (a pass claims
   * jobs as it goes): each step resumes after the last job it gave, found
   * again by its place in the order, so nothing is skipped or given twice.
   */
  *inOrder(): IterableIterator<JobRecord> {
    let last: JobRecord | null = null;
    for (;;) {
      // A job keeps its place while queued (its priority and seq never change).
      const next: number = last === null ? 0 : this.slot(last) + (this.byId.has(last.id) ? 1 : 0);
      const record: JobRecord | undefined = this.order[next];
      if (record === undefined) return;
      last = record;
      yield record;
    }
  }

  /** How many of its jobs have a priority above `priority` (`inclusive`: at or above it). */
  countAbove(priority: number, inclusive: boolean): number {
    return this.slot({ priority: inclusive ? priority - 0.5 : priority + 0.5, seq: 0 });
  }

  /** How many of its jobs come before a job of this priority and seq. */
  countBefore(place: Place): number {
    return this.slot(place);
  }

  /** The place a job of this priority submitted now would take (0 is next). */
  placeFor(priority: number): number {
    return this.slot({ priority, seq: Number.POSITIVE_INFINITY });
  }

  /** Where `record` stands, or would stand: the first slot whose job does not come before it. */
  private slot(record: Place): number {
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (queueOrder(this.order[mid]!, record) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
