import type { JobEventHub } from '../jobs/events.js';
import type { JobService } from '../jobs/service.js';
import { isTerminal, type JobState } from '../model/states.js';
import type { ChangeFeed, JobRecord, StoreChange } from '../store/store.js';

export interface BridgeTargets {
  events: JobEventHub;
  jobs: JobService;
  /** The fleet's nodes changed (one joined, was lost or drained). */
  nodesChanged: () => void;
  /** A job was queued, or queued again, by another hand: take it into the queue (its record, or read it when none came). */
  queued: (jobId: string, record: JobRecord | null) => void;
  /** A node took the job or moved it on (pulling, starting, running): count it as active, and its GPU time once it runs. */
  taken: (jobId: string, state: JobState, record: JobRecord | null) => void;
  /** A job ended: drop it from the queue and the active jobs, if there. */
  dequeued: (jobId: string) => void;
  /** Changes may have been missed: read the whole queue again. */
  queueResync: () => void;
}

/**
 * Carries what other nodes changed in the shared store into this node's
 * own events: a live follower here hears of lines stored by the node that
 * runs the job, a cancel asked of another node reaches the run here, and a
 * job queued anywhere joins this node's queue and wakes its scheduler. A
 * change carries the job's record when it fits in the announcement
 * (job-announcement.ts); one that does not costs a store read only when
 * someone here follows that job, or the queue needs it.
 */
export function bridgeChanges(feed: ChangeFeed, t: BridgeTargets): () => void {
  const onChange = (change: StoreChange): void => {
    switch (change.kind) {
      case 'log':
        t.events.publishAppend(change.jobId, change.lastSeq);
        return;
      case 'job':
        if (change.state === 'queued' && change.node === null) t.queued(change.jobId, change.record);
        else if (isTerminal(change.state)) t.dequeued(change.jobId);
        else t.taken(change.jobId, change.state, change.record);
        if (change.cancelRequested) t.events.publishCancelRequested(change.jobId);
        if (t.events.watched(change.jobId)) void publishStatus(t, change.jobId, change.record);
        return;
      case 'nodes':
        t.nodesChanged();
        return;
      case 'resync':
        // Changes may have been missed while the feed was away: every live
        // follower looks again, and so does the scheduler.
        for (const jobId of t.events.watchedJobs()) void publishStatus(t, jobId);
        t.nodesChanged();
        t.queueResync();
        return;
    }
  };
  return feed.subscribe(onChange);
}

async function publishStatus(t: BridgeTargets, jobId: string, record: JobRecord | null = null): Promise<void> {
  const job = await (record ? t.jobs.view(record) : t.jobs.current(jobId)).catch(() => null);
  if (job) t.events.publishStatus(job);
}
