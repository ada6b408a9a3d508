import type { JobPatch, JobRecord, NodeRecord } from '../store/store.js';

/**
 * What becomes of a job that was pulling, starting or running on a node
 * the fleet declared lost. A cancel asked for ends it cancelled; a spec
 * whose retry rule names `node_lost`, with attempts left, goes back to the
 * queue as the next attempt, which any node may take; any other job fails,
 * saying which node was lost. Its GPUs are released with it.
 */
export function settleLostJob(record: JobRecord, node: NodeRecord, now: Date): JobPatch {
  const finishedAt = now.toISOString();
  const silent = `renewed no lease for ${node.leaseSeconds} s`;
  if (record.cancelRequested) {
    return {
      state: 'cancelled',
      finishedAt,
      reason: `cancelled; node "${node.name}" was lost (it ${silent}) before it could stop the job`,
    };
  }
  const retry = record.spec.retry;
  const next = record.attempt + 1;
  if (retry?.on.includes('node_lost') && next <= retry.maxAttempts) {
    return {
      state: 'queued',
      node: null,
      attempt: next,
      containerId: null,
      gpus: [],
      gpuMemoryMiB: null,
      startedAt: null,
      deadlineAt: null,
      exitCode: null,
      pullStatus: null,
      pullProgress: null,
      reason: `attempt ${record.attempt} was lost with node "${node.name}" (it ${silent}); queued again as attempt ${next} of ${retry.maxAttempts}`,
    };
  }
  const attempts = retry ? ` (attempt ${record.attempt} of ${retry.maxAttempts}: none left)` : '';
  return {
    state: 'failed',
    finishedAt,
    gpus: [],
    gpuMemoryMiB: null,
    reason: `node "${node.name}" was lost while the job was ${record.state}: it ${silent}${attempts}`,
  };
}
