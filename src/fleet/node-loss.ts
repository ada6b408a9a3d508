import { settleAttempt } from '../jobs/retry-policy.js';
import type { JobPatch, JobRecord, NodeRecord } from '../store/store.js';

/**
 * What becomes of a job that was pulling, starting or running on a node
 * the fleet declared lost: its attempt ends with cause `node_lost`, and the
 * spec's retry rules decide (retry-policy.ts). A cancel asked for ends it
 * cancelled; a retry goes back to the queue as the next attempt, which any
 * node may take; any other end fails, saying which node was lost. Its GPUs
 * are released with it.
 */
export function settleLostJob(record: JobRecord, node: NodeRecord, now: Date): JobPatch {
  const silent = `renewed no lease for ${node.leaseSeconds} s`;
  if (record.cancelRequested) {
    const reason = `cancelled; node "${node.name}" was lost (it ${silent}) before it could stop the job`;
    return settleAttempt(record, { outcome: 'cancelled', cause: null, reason, exitCode: null }, now).patch;
  }
  const reason = `node "${node.name}" was lost while the job was ${record.state}: it ${silent}`;
  const { patch } = settleAttempt(record, { outcome: 'failed', cause: 'node_lost', reason, exitCode: null }, now);
  return patch.state === 'queued' ? patch : { ...patch, gpus: [], gpuMemoryMiB: null };
}
