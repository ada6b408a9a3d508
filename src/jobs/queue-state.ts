/**
 * What the scheduler knows about the queue that the store does not: which
 * queued jobs it has already taken (they read `queued` until their first
 * step is stored) and why each other one waits. The scheduler writes it;
 * job views and cancel read it.
 */
export class QueueState {
  private readonly launched = new Set<string>();
  private waiting = new Map<string, string>();

  markLaunched(jobId: string): void {
    this.launched.add(jobId);
  }

  markDone(jobId: string): void {
    this.launched.delete(jobId);
  }

  isLaunched(jobId: string): boolean {
    return this.launched.has(jobId);
  }

  /** Replaces every wait reason at once (one scheduling pass decides them all). */
  setWaitReasons(reasons: Map<string, string>): void {
    this.waiting = reasons;
  }

  waitReason(jobId: string): string | null {
    return this.waiting.get(jobId) ?? null;
  }
}
