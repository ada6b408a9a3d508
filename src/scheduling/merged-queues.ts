import type { JobRecord } from '../store/store.js';
import type { QueueIndex } from './queue-index.js';

/**
 * The jobs of every owner's queues (CPU and GPU apart, each in order)
 * merged into one order: only the queues' heads are compared, so a step
 * costs the number of queues, not of jobs. `skip` is asked before each
 * step, and a queue it names is passed over unread. The queues may lose
 * jobs while this is read: each resumes after the last job it gave.
 */
export function* mergedInOrder(
  streams: ReadonlyMap<string, { cpu: QueueIndex; gpu: QueueIndex }>,
  skip: (owner: string, gpu: boolean) => boolean,
  order: (a: JobRecord, b: JobRecord) => number,
): IterableIterator<JobRecord> {
  const heads: { owner: string; gpu: boolean; it: Iterator<JobRecord>; head: JobRecord }[] = [];
  for (const [owner, s] of streams) {
    for (const [gpu, index] of [
      [false, s.cpu],
      [true, s.gpu],
    ] as const) {
      const it = index.inOrder();
      const first = it.next();
      if (!first.done) heads.push({ owner, gpu, it, head: first.value });
    }
  }
  for (;;) {
    let best: (typeof heads)[number] | null = null;
    for (const h of heads) {
      if (skip(h.owner, h.gpu)) continue;
      if (best === null || order(h.head, best.head) < 0) best = h;
    }
    if (best === null) return;
    yield best.head;
    const next = best.it.next();
    if (next.done) heads.splice(heads.indexOf(best), 1);
    else best.head = next.value;
  }
}
