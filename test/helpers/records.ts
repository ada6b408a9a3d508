import type { JobSpec } from '../../src/model/job.js';
import type { JobRecord } from '../../src/store/store.js';

/** Small deterministic PRNG (mulberry32), so a failing seed can be replayed. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A stored job as the store would give it: queued, owner `o`, id `j<seq>`, unless `over` says otherwise. */
export function jobRecord(seq: number, over: Partial<JobRecord> = {}): JobRecord {
  return {
    seq,
    id: `j${seq}`,
    owner: 'o',
    name: null,
    state: 'queued',
    priority: 0,
    spec: { image: 'local/busybox', command: ['true'] } as JobSpec,
    specHash: 'h',
    idempotencyKey: null,
    requestId: null,
    containerId: null,
    gpus: [],
    node: null,
    attempt: 1,
    attempts: [],
    notBefore: null,
    gpuMemoryMiB: null,
    gpuTelemetry: null,
    exitCode: null,
    reason: null,
    result: null,
    pullStatus: null,
    pullProgress: null,
    cancelRequested: false,
    createdAt: new Date(0).toISOString(),
    startedAt: null,
    finishedAt: null,
    deadlineAt: null,
    ...over,
  };
}
