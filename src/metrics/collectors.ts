import { Counter, Gauge, type Registry } from 'prom-client';
import type { GpuAllocator } from '../gpu/allocator.js';
import type { GpuDevice } from '../gpu/inventory.js';
import { STDOUT_BUFFER_BYTES } from '../logging.js';
import { NODE_STATES } from '../model/node.js';
import { JOB_STATES } from '../model/states.js';
import { type TeamSources, teamList } from '../scheduling/teams.js';
import type { NodeGauge, Store } from '../store/store.js';

export interface CollectorSources {
  store: Store;
  gpus: GpuAllocator;
  /** This node, exported as gantry_node_info; absent: no info series. */
  node?: { name: string; version: string } | undefined;
  /** Process log lines dropped because stdout was read too slowly or could not be written (src/logging.ts). */
  droppedLogLines: () => number;
  /** The teams' limits and use, and fair share's units, now (src/model/teams.ts); absent: no team series. */
  teams?: TeamSources | undefined;
}

/**
 * Registers the gauges that are read at scrape time from state the store or
 * the allocator already keeps: jobs by state and owner, the queue, GPU
 * holders, stored logs, the process log's dropped lines, and the teams'
 * use against their quotas.
 */
export function registerCollectors(registry: Registry, src: CollectorSources): void {
  const stored = shared(() => readStore(src.store));
  registerJobGauges([registry], stored);
  registerGpuGauges([registry], src.gpus);
  registerLogGauges([registry], stored);
  registerNodeGauges([registry], stored, src.node);
  if (src.teams) registerTeamGauges([registry], src.teams);
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
 * the gauges fed by the store share one read per scrape and report the same
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

/** What a scrape reads from the store. */
interface StoreReadings {
  jobs: Awaited<ReturnType<Store['jobs']['countByStateAndOwner']>>;
  queue: Awaited<ReturnType<Store['jobs']['queueSummary']>>;
  logs: Awaited<ReturnType<Store['logs']['totals']>>;
  nodes: NodeGauge[];
}

/**
 * Everything a scrape reads from the store, one statement after another:
 * every node of a fleet is scraped, so reads made side by side would hold
 * a pooled connection each on every node between scrapes.
 */
async function readStore(store: Store): Promise<StoreReadings> {
  const jobs = await store.jobs.countByStateAndOwner();
  const queue = await store.jobs.queueSummary();
  const logs = await store.logs.totals();
  return { jobs, queue, logs, nodes: await store.nodes.gauges() };
}

type Read = () => Promise<StoreReadings>;

function registerJobGauges(registers: Registry[], read: Read): void {
  new Gauge({
    name: 'gantry_jobs',
    help: 'Jobs in the store, by state and owner (every state is reported for each owner seen).',
    labelNames: ['state', 'owner'],
    registers,
    async collect() {
      const rows = (await read()).jobs;
      // Reset only once the rows are in, so that overlapping scrapes never see a half-filled gauge.
      this.reset();
      for (const owner of new Set(rows.map((r) => r.owner))) {
        for (const state of JOB_STATES) this.set({ state, owner }, 0);
      }
      for (const r of rows) this.set({ state: r.state, owner: r.owner }, r.count);
    },
  });
  new Gauge({
    name: 'gantry_queue_length',
    help: 'Jobs waiting in the queue.',
    registers,
    async collect() {
      this.set((await read()).queue.length);
    },
  });
  new Gauge({
    name: 'gantry_queue_oldest_wait_seconds',
    help: 'How long the oldest queued job has waited so far (0 when the queue is empty).',
    registers,
    async collect() {
      const { oldestCreatedAt } = (await read()).queue;
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

function registerLogGauges(registers: Registry[], read: Read): void {
  const totals = async () => (await read()).logs;
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

/**
 * The fleet's nodes, read from the store at scrape time (every node reports
 * the whole fleet, so any one of them can be scraped), and this node's own
 * name and version.
 */
function registerNodeGauges(registers: Registry[], read: Read, self: CollectorSources['node']): void {
  const fleet = async () => (await read()).nodes;
  /** A gauge with one series per node, replaced as a whole by each scrape. */
  const perNode = (name: string, help: string, value: (n: NodeGauge) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['node'],
      registers,
      async collect() {
        const nodes = await fleet();
        this.reset();
        for (const n of nodes) this.set({ node: n.name }, value(n));
      },
    });
  new Gauge({
    name: 'gantry_nodes',
    help: 'Nodes in the fleet by state (up: renews its lease; lost: its lease expired) and drain switch; every pair is reported.',
    labelNames: ['state', 'drained'],
    registers,
    async collect() {
      const nodes = await fleet();
      this.reset();
      for (const state of NODE_STATES) {
        for (const drained of [true, false]) {
          this.set({ state, drained: String(drained) }, nodes.filter((n) => n.state === state && n.drained === drained).length);
        }
      }
    },
  });
  perNode(
    'gantry_node_heartbeat_age_seconds',
    "Seconds since the node last renewed its lease, by the store's clock.",
    (n) => n.heartbeatAgeSeconds,
  );
  perNode('gantry_node_gpus', 'GPUs in the node’s inventory.', (n) => n.gpus);
  perNode('gantry_node_gpus_allocated', 'GPUs of the node held by at least one job.', (n) => n.gpusAllocated);
  perNode('gantry_node_running_jobs', 'Jobs the node runs now (pulling, starting or running).', (n) => n.runningJobs);
  if (self) {
    new Gauge({
      name: 'gantry_node_info',
      help: 'This Gantry: its node name (GANTRY_NODE_NAME) and version; always 1.',
      labelNames: ['node', 'version'],
      registers,
    }).set({ node: self.name, version: self.version }, 1);
  }
}

/**
 * The teams' use against their quotas and fair share's units, read once per
 * scrape. Each gauge is reset on every collect, so a team a reload of the
 * quotas file removed, or a unit whose use decayed to nothing, disappears.
 */
function registerTeamGauges(registers: Registry[], sources: TeamSources): void {
  const teams = () => teamList(sources);
  const read = shared(async () => teams());
  new Gauge({
    name: 'gantry_team_gpus',
    help: 'GPUs of a team (GANTRY_QUOTAS_FILE): held by its jobs now, its nominal `gpus`, and the most it may hold borrowing (`gpus` + `borrowGpus`); a limit not set is not reported.',
    labelNames: ['team', 'kind'],
    registers,
    async collect() {
      const { items } = await read();
      this.reset();
      for (const t of items) {
        this.set({ team: t.name, kind: 'held' }, t.use.gpus);
        if (t.limits.gpus !== null) {
          this.set({ team: t.name, kind: 'nominal' }, t.limits.gpus);
          this.set({ team: t.name, kind: 'borrow_limit' }, t.limits.gpus + (t.limits.borrowGpus ?? 0));
        }
      }
    },
  });
  new Gauge({
    name: 'gantry_team_jobs',
    help: "A team's jobs, fleet-wide as this node has heard: queued and untaken, and running (taken by a node and not ended).",
    labelNames: ['team', 'state'],
    registers,
    async collect() {
      const { items } = await read();
      this.reset();
      for (const t of items) {
        this.set({ team: t.name, state: 'queued' }, t.use.queuedJobs);
        this.set({ team: t.name, state: 'running' }, t.use.runningJobs);
      }
    },
  });
  new Gauge({
    name: 'gantry_team_limit_jobs',
    help: "A team's job limits (GANTRY_QUOTAS_FILE maxQueued, maxRunning); a limit not set is not reported.",
    labelNames: ['team', 'kind'],
    registers,
    async collect() {
      const { items } = await read();
      this.reset();
      for (const t of items) {
        if (t.limits.maxQueued !== null) this.set({ team: t.name, kind: 'max_queued' }, t.limits.maxQueued);
        if (t.limits.maxRunning !== null) this.set({ team: t.name, kind: 'max_running' }, t.limits.maxRunning);
      }
    },
  });
  new Gauge({
    name: 'gantry_fair_share_usage_gpu_seconds',
    help: "A fair-share unit's recent GPU use (team:<name>, or owner:<owner> in no team): GPU-seconds, each halving in weight every GANTRY_FAIR_SHARE_HALF_LIFE_SECONDS.",
    labelNames: ['unit'],
    registers,
    async collect() {
      const { fairShare } = await read();
      this.reset();
      for (const u of fairShare.units) this.set({ unit: u.unit }, u.gpuSeconds);
    },
  });
}
