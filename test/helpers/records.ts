import type { JobSpec } from '../../src/model/job.js';
import type { RunSettings } from '../../src/model/run-settings.js';
import { type JobRecord, type NewJob, type NodeInfo, newJobRecord } from '../../src/store/store.js';

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

/** Run settings as a submit with the default configuration resolves them (jobs/run-settings.ts). */
export const RUN_SETTINGS: RunSettings = Object.freeze({
  timeoutSeconds: 86_400,
  memoryMiB: 2048,
  user: '65532:65532',
  pullPolicy: 'missing',
  stopGraceSeconds: 10,
});

let ids = 0;
/** A job as a submit stores it: a fresh id, owner `alice`, a busybox spec with `o.spec` merged in, unless `o` says otherwise. */
export function newJob(o: Omit<Partial<NewJob>, 'spec'> & { spec?: Partial<JobSpec> } = {}): NewJob {
  return {
    id: o.id ?? `job-${++ids}`,
    owner: o.owner ?? 'alice',
    spec: { image: 'local/busybox:latest', command: ['true'], ...o.spec } as JobSpec,
    specHash: o.specHash ?? 'hash',
    idempotencyKey: o.idempotencyKey ?? null,
    requestId: o.requestId ?? null,
    createdAt: o.createdAt ?? new Date().toISOString(),
    settings: o.settings ?? RUN_SETTINGS,
  };
}

/** A stored job as the store would give it: queued, owner `o`, id `j<seq>`, unless `over` says otherwise. */
export function jobRecord(seq: number, over: Partial<JobRecord> = {}): JobRecord {
  const job = newJob({ id: `j${seq}`, owner: 'o', spec: { image: 'local/busybox' }, specHash: 'h', createdAt: new Date(0).toISOString() });
  return { ...newJobRecord(job, seq), ...over };
}

/** A node as it registers: one card, label zone=a. */
export function nodeInfo(name: string, leaseSeconds = 30): NodeInfo {
  return {
    name,
    labels: { zone: 'a' },
    gpus: [{ index: 0, uuid: `GPU-${name}-0`, name: 'NVIDIA H200', memoryMiB: 143_771 }],
    version: '0.2.0',
    leaseSeconds,
  };
}
