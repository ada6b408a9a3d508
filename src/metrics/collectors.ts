import { Counter, Gauge, type Registry } from 'prom-client';
import type { GpuAllocator } from '../gpu/allocator.js';
import type { GpuDevice } from '../gpu/inventory.js';
import { STDOUT_BUFFER_BYTES } from '../logging.js';
import { JOB_STATES } from '../model/states.js';
import type { Store } from '../store/store.js';

export interface CollectorSources {
  store: Store;
  gpus: GpuAllocator;
  /** Process log lines dropped because stdout was read too slowly or could not be written (src/logging.ts). */
  droppedLogLines: () => number;
}

/**
 * Registers the gauges that are read at scrape time from state the store or
 * the allocator already keeps: jobs by state and owner, the queue, GPU
 * holders, stored logs, and the process log's dropped lines.
 */
export function registerCollectors(registry: Registry, src: CollectorSources): void {
  registerJobGauges([registry], src.store);
  registerGpuGauges([registry], src.gpus);
  registerLogGauges([registry], src.store);
  new Counter({
    name: 'gantry_process_log_dropped_lines_total',
    help: `Gantry's own log lines (stdout) dropped because their reader fell more than ${STDOUT_BUFFER_BYTES / 1024 / 1024} MiB behind or stdout could not be written (a full disk); job logs are not affected.`,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(src.droppedLogLines());
    },
  });
}

/**
 * Calls made while an earlier call's promise is still pending get that same
 * promise. A scrape starts every collector before any of them settles, so
 * the gauges fed by one query share one read per scrape and report the same
 * snapshot; correctness never depends on the order in which they run.
 */
function shared<T>(read: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | null = null;
  return () => {
    pending ??= read().finally(() => {
      pending = null;
    });
    return pending;
  };
}

function registerJobGauges(registers: Registry[], store: Store): void {
  new Gauge({
    name: 'gantry_jobs',
    help: 'Jobs in the store, by state and owner (every state is reported for each owner seen).',
    labelNames: ['state', 'owner'],
    registers,
    async collect() {
      const rows = await store.jobs.countByStateAndOwner();
      // Reset only once the rows are in, so that overlapping scrapes never see a half-filled gauge.
      this.reset();
      for (const owner of new Set(rows.map((r) => r.owner))) {
        for (const state of JOB_STATES) this.set({ state, owner }, 0);
      }
      for (const r of rows) this.set({ state: r.state, owner: r.owner }, r.count);
    },
  });
  const queue = shared(() => store.jobs.queueSummary());
  new Gauge({
    name: 'gantry_queue_length',
    help: 'Jobs waiting in the queue.',
    registers,
    async collect() {
      this.set((await queue()).length);
    },
  });
  new Gauge({
    name: 'gantry_queue_oldest_wait_seconds',
    help: 'How long the oldest queued job has waited so far (0 when the queue is empty).',
    registers,
    async collect() {
      const { oldestCreatedAt } = await queue();
      this.set(oldestCreatedAt ? Math.max(0, (Date.now() - Date.parse(oldestCreatedAt)) / 1000) : 0);
    },
  });
}

function registerGpuGauges(registers: Registry[], gpus: GpuAllocator): void {
  const gpuLabels = ['gpu', 'uuid'] as const;
  const eachGpu = (fn: (labels: { gpu: string; uuid: string }, d: GpuDevice) => void) => {
    for (const d of gpus.devices) fn({ gpu: String(d.index), uuid: d.uuid }, d);
  };
  new Gauge({
    name: 'gantry_gpu_memory_mib',
    help: 'Memory of each GPU in the inventory.',
    labelNames: [...gpuLabels, 'name'],
    registers,
    collect() {
      this.reset();
      eachGpu((l, d) => this.set({ ...l, name: d.name }, d.memoryMiB));
    },
  });
  new Gauge({
    name: 'gantry_gpu_allocated',
    help: '1 when at least one job holds the GPU, else 0.',
    labelNames: gpuLabels,
    registers,
    collect() {
      this.reset();
      eachGpu((l, d) => this.set(l, gpus.holders(d.uuid).length > 0 ? 1 : 0));
    },
  });
  new Gauge({
    name: 'gantry_gpu_jobs',
    help: 'Jobs holding the GPU (more than one only when sharing by declared memory).',
    labelNames: gpuLabels,
    registers,
    collect() {
      this.reset();
      eachGpu((l, d) => this.set(l, gpus.holders(d.uuid).length));
    },
  });
  new Gauge({
    name: 'gantry_gpu_allocated_memory_mib',
    help: 'GPU memory held by jobs: their declared shares, or the whole card for exclusive use (accounting, not measured use).',
    labelNames: gpuLabels,
    registers,
    collect() {
      this.reset();
      eachGpu((l, d) => {
        const holders = gpus.holders(d.uuid);
        const mib = holders.some((h) => h.memoryMiB === null) ? d.memoryMiB : holders.reduce((s, h) => s + (h.memoryMiB ?? 0), 0);
        this.set(l, mib);
      });
    },
  });
}

function registerLogGauges(registers: Registry[], store: Store): void {
  const totals = shared(() => store.logs.totals());
  new Gauge({
    name: 'gantry_log_stored_bytes',
    help: 'Bytes of job output captured and kept in the store (falls when retention deletes old logs).',
    registers,
    async collect() {
      this.set((await totals()).bytes);
    },
  });
  new Gauge({
    name: 'gantry_log_stored_records',
    help: 'Log records (lines) kept in the store, by stream.',
    labelNames: ['stream'],
    registers,
    async collect() {
      const t = await totals();
      this.set({ stream: 'stdout' }, t.stdoutRecords);
      this.set({ stream: 'stderr' }, t.stderrRecords);
    },
  });
  new Gauge({
    name: 'gantry_log_truncated_jobs',
    help: 'Jobs whose output reached GANTRY_LOG_MAX_BYTES and was cut.',
    registers,
    async collect() {
      this.set((await totals()).truncatedJobs);
    },
  });
}
