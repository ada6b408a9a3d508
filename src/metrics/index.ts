import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Statement } from 'better-sqlite3';
import type { Config } from '../config.js';
import type { TokenStore } from '../auth/tokens.js';
import { authenticator } from '../api/auth.js';
import type { GpuAllocator } from '../gpu/allocator.js';
import type { Job } from '../jobs/schema.js';
import { STDOUT_BUFFER_BYTES } from '../logging.js';
import { HttpLatencyHistogram } from './http-latency.js';
import { JOB_STATES, isTerminal } from '../jobs/states.js';
import type { JobHub } from '../logs/hub.js';
import type { Db } from '../store/db.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Gantry's Prometheus metrics (issue 9). */
    metrics: GantryMetrics;
  }
}

export interface MetricsSources {
  db: Db;
  gpus: GpuAllocator;
  hub: JobHub;
  /** Process log lines dropped because stdout was read too slowly (src/logging.ts). */
  droppedLogLines: () => number;
}

const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const WAIT_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600];
const RUN_BUCKETS = [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 2 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 3 * 86400];

/** How many job ids are remembered to observe each job's queue wait and end once. */
const SEEN_CAP = 10_000;

/** A set that forgets its oldest entries past a cap (insertion order). */
class BoundedSet {
  private readonly items = new Set<string>();
  constructor(private readonly cap: number) {}
  has(id: string): boolean {
    return this.items.has(id);
  }
  add(id: string): void {
    this.items.add(id);
    if (this.items.size > this.cap) this.items.delete(this.items.values().next().value!);
  }
  delete(id: string): void {
    this.items.delete(id);
  }
}

/**
 * Gantry's metrics, in a registry of its own (so several apps can live in
 * one process, as in tests). State that the store or the allocator already
 * knows (jobs by state and owner, the queue, GPU holders, stored log bytes)
 * is read at scrape time; what only passes by (queue waits, run times, HTTP
 * latencies, Docker errors, SSE connections) is observed as it happens.
 */
export class GantryMetrics {
  readonly registry = new Registry();
  readonly dockerErrors: Counter<'op'>;
  readonly httpDuration = new HttpLatencyHistogram(HTTP_BUCKETS);
  readonly sseClients: Gauge;
  readonly jobsFinished: Counter<'state' | 'owner'>;
  readonly queueWait: Histogram;
  readonly jobDuration: Histogram<'state'>;
  /** The no-token listener of GANTRY_METRICS=open, once set up. */
  openServer: http.Server | null = null;
  private readonly sseRequests = new WeakSet<FastifyRequest>();
  private readonly leftQueue = new BoundedSet(SEEN_CAP);
  private readonly ended = new BoundedSet(SEEN_CAP);

  constructor(src: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const { db, gpus } = src;
    const byStateOwner: Statement = db.prepare(`SELECT state, owner, COUNT(*) AS n FROM jobs GROUP BY state, owner`);
    const queue: Statement = db.prepare(`SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM jobs WHERE state = 'queued'`);
    const logTotals: Statement = db.prepare(
      `SELECT COALESCE(SUM(bytes), 0) AS bytes, COALESCE(SUM(stdout_records), 0) AS stdout, COALESCE(SUM(stderr_records), 0) AS stderr,
              COALESCE(SUM(truncated), 0) AS truncated FROM log_state`,
    );

    new Gauge({
      name: 'gantry_jobs',
      help: 'Jobs in the store, by state and owner (every state is reported for each owner seen).',
      labelNames: ['state', 'owner'],
      registers,
      collect() {
        this.reset();
        const rows = byStateOwner.all() as { state: string; owner: string; n: number }[];
        for (const owner of new Set(rows.map((r) => r.owner))) {
          for (const state of JOB_STATES) this.set({ state, owner }, 0);
        }
        for (const r of rows) this.set({ state: r.state, owner: r.owner }, r.n);
      },
    });
    let queueRow: { n: number; oldest: string | null } = { n: 0, oldest: null };
    new Gauge({
      name: 'gantry_queue_length',
      help: 'Jobs waiting in the queue.',
      registers,
      collect() {
        queueRow = queue.get() as typeof queueRow;
        this.set(queueRow.n);
      },
    });
    new Gauge({
      name: 'gantry_queue_oldest_wait_seconds',
      help: 'How long the oldest queued job has waited so far (0 when the queue is empty).',
      registers,
      collect() {
        // Registry.metrics() collects in registration order: queueRow is fresh.
        this.set(queueRow.oldest ? Math.max(0, (Date.now() - Date.parse(queueRow.oldest)) / 1000) : 0);
      },
    });
    this.queueWait = new Histogram({
      name: 'gantry_queue_wait_seconds',
      help: 'Time from submission until a job left the queue (got its run slot and GPUs).',
      buckets: WAIT_BUCKETS,
      registers,
    });
    this.jobDuration = new Histogram({
      name: 'gantry_job_duration_seconds',
      help: 'Run time of jobs that started, from container start to the end, by final state.',
      labelNames: ['state'],
      buckets: RUN_BUCKETS,
      registers,
    });
    this.jobsFinished = new Counter({
      name: 'gantry_jobs_finished_total',
      help: 'Jobs that reached a final state since this process started, by state and owner.',
      labelNames: ['state', 'owner'],
      registers,
    });

    const gpuLabels = ['gpu', 'uuid'] as const;
    const eachGpu = (fn: (labels: { gpu: string; uuid: string }, d: (typeof gpus.devices)[number]) => void) => {
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

    let logRow = { bytes: 0, stdout: 0, stderr: 0, truncated: 0 };
    new Gauge({
      name: 'gantry_log_stored_bytes',
      help: 'Bytes of job output captured and kept in the store (falls when retention deletes old logs).',
      registers,
      collect() {
        logRow = logTotals.get() as typeof logRow;
        this.set(logRow.bytes);
      },
    });
    new Gauge({
      name: 'gantry_log_stored_records',
      help: 'Log records (lines) kept in the store, by stream.',
      labelNames: ['stream'],
      registers,
      collect() {
        this.set({ stream: 'stdout' }, logRow.stdout);
        this.set({ stream: 'stderr' }, logRow.stderr);
      },
    });
    new Gauge({
      name: 'gantry_log_truncated_jobs',
      help: 'Jobs whose output reached GANTRY_LOG_MAX_BYTES and was cut.',
      registers,
      collect() {
        this.set(logRow.truncated);
      },
    });

    new Counter({
      name: 'gantry_process_log_dropped_lines_total',
      help: `Gantry's own log lines (stdout) dropped because their reader fell more than ${STDOUT_BUFFER_BYTES / 1024 / 1024} MiB behind; job logs are not affected.`,
      registers,
      collect() {
        this.reset();
        this.inc(src.droppedLogLines());
      },
    });

    this.sseClients = new Gauge({
      name: 'gantry_sse_clients',
      help: 'Log followers connected over Server-Sent Events.',
      registers,
    });
    this.registry.registerMetric(this.httpDuration.asMetric());
    this.dockerErrors = new Counter({
      name: 'gantry_docker_api_errors_total',
      help: 'Docker Engine API calls that failed while driving jobs, by operation.',
      labelNames: ['op'],
      registers,
    });
    for (const op of ['create', 'start', 'stop', 'remove', 'other']) this.dockerErrors.inc({ op }, 0);

    src.hub.onAnyStatus((job) => {
      try {
        this.observeStatus(job);
      } catch {
        // Metrics must never disturb a job's state change.
      }
    });
  }

  /** For the scheduler: one Docker API call failed. */
  readonly dockerError = (op: string): void => {
    this.dockerErrors.inc({ op });
  };

  private observeStatus(job: Job): void {
    const now = Date.now();
    if ((job.state === 'pulling' || job.state === 'starting' || job.state === 'running') && !this.leftQueue.has(job.id)) {
      this.leftQueue.add(job.id);
      this.queueWait.observe(Math.max(0, (now - Date.parse(job.createdAt)) / 1000));
    }
    if (isTerminal(job.state) && !this.ended.has(job.id)) {
      this.ended.add(job.id);
      this.leftQueue.delete(job.id);
      this.jobsFinished.inc({ state: job.state, owner: job.owner });
      if (job.startedAt) {
        const end = job.finishedAt ? Date.parse(job.finishedAt) : now;
        this.jobDuration.observe({ state: job.state }, Math.max(0, (end - Date.parse(job.startedAt)) / 1000));
      }
    }
  }

  /** Marks a request as an SSE follower for as long as its connection lives. */
  trackSse(request: FastifyRequest, res: http.ServerResponse): void {
    this.sseRequests.add(request);
    this.sseClients.inc();
    res.once('close', () => this.sseClients.dec());
  }

  isSse(request: FastifyRequest): boolean {
    return this.sseRequests.has(request);
  }

  /** Where the open metrics listener is bound, or null. */
  openAddress(): AddressInfo | null {
    const a = this.openServer?.address();
    return a && typeof a !== 'string' ? a : null;
  }

  /** Settles once the open listener has tried to listen (onListen hooks run after listen() returns). */
  openReady: Promise<void> = Promise.resolve();
}

/**
 * Wires metrics into the app: HTTP latency and SSE hooks on every route,
 * `GET /metrics` on the API port (a token with the `metrics` scope, or
 * admin), and with GANTRY_METRICS=open a second listener on
 * GANTRY_METRICS_PORT that needs no token. Call before the routes are
 * registered, on the root instance.
 */
export function installMetrics(
  app: FastifyInstance,
  metrics: GantryMetrics,
  o: { config: Config; tokens: TokenStore },
): void {
  app.decorate('metrics', metrics);

  // A callback-style hook: an async hook costs every request a promise.
  // (SSE streams are marked by their route, src/api/routes/logs.ts.)
  app.addHook('onResponse', (request, reply, done) => {
    if (!metrics.isSse(request)) {
      metrics.httpDuration.observe(request.method, request.routePattern || 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
    }
    done();
  });

  const mode = o.config.metrics;
  if (mode === 'off') return;
  const scrape = async (): Promise<string> => metrics.registry.metrics();

  app.get(
    '/metrics',
    { onRequest: authenticator(o.tokens)('metrics'), schema: { hide: true } },
    async (_request, reply) => reply.type(metrics.registry.contentType).send(await scrape()),
  );

  if (mode !== 'open') return;
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('only GET /metrics is served here\n');
      return;
    }
    scrape().then(
      (body) => res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(req.method === 'HEAD' ? undefined : body),
      (err: unknown) => {
        app.log.error({ err }, 'metrics scrape failed');
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end('scrape failed\n');
      },
    );
  });
  metrics.openServer = server;
  let ready: () => void = () => undefined;
  metrics.openReady = new Promise<void>((resolve) => (ready = resolve));
  // The app itself never listens in buildApp; the open metrics port follows
  // the API's own listen() and close().
  app.addHook('onListen', async () => {
    await new Promise<void>((resolve) => {
      server.once('error', (err) => {
        app.log.error({ err, port: o.config.metricsPort }, 'the open metrics listener (GANTRY_METRICS_PORT) could not start');
        resolve();
      });
      server.listen({ host: o.config.host, port: o.config.metricsPort }, () => {
        app.log.info({ address: server.address() }, 'metrics served without a token (GANTRY_METRICS=open)');
        resolve();
      });
    });
    ready();
  });
  app.addHook('onClose', async () => {
    if (!server.listening) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
}

