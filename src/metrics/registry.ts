import type http from 'node:http';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { GpuAllocator } from '../gpu/allocator.js';
import type { GpuHealthBook } from '../gpu/health/state.js';
import type { JobEventHub } from '../jobs/events.js';
import type { Job } from '../model/job.js';
import { isTerminal } from '../model/states.js';
import { RUNTIME_OPS, type RuntimeOp } from '../runtime/runtime.js';
import type { DeciderPass } from '../scheduling/fleet-decide.js';
import { PREEMPTION_RULES, type PreemptionRule } from '../scheduling/preemption.js';
import type { TeamSources } from '../scheduling/teams.js';
import type { Store } from '../store/store.js';
import { AttemptMetrics } from './attempts.js';
import { registerCollectors } from './collectors.js';
import { registerGpuHealthMetrics } from './gpu-health.js';
import { HttpLatencyHistogram } from './http-latency.js';
import { JobGpuMetrics } from './job-gpus.js';

export interface MetricsSources {
  store: Store;
  gpus: GpuAllocator;
  /** Each card's health (absent: no health series). */
  health?: GpuHealthBook;
  events: JobEventHub;
  /** Process log lines dropped because stdout was read too slowly (src/logging.ts). */
  droppedLogLines: () => number;
  /** This node's name (GANTRY_NODE_NAME) and Gantry's version, exported as gantry_node_info. */
  node?: { name: string; version: string };
  /** The teams' limits and use now (absent: no team series). */
  teams?: TeamSources;
}

const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const WAIT_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600];
/** Engine calls: milliseconds for an inspect, seconds for a create or a stop, minutes for a pull. */
const ENGINE_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30, 120, 600];
/** A scheduling pass reads the queue's head and claims what starts: milliseconds, unless the store is slow. */
const PASS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
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
 * knows is read at scrape time (collectors.ts); what only passes by (queue
 * waits, run times, HTTP latencies, container runtime errors, SSE
 * connections) is observed here as it happens.
 */
export class GantryMetrics {
  /** Observed by the HTTP layer on every response but SSE streams. */
  readonly httpDuration = new HttpLatencyHistogram(HTTP_BUCKETS);
  /** Live GPU figures of the running jobs, set by the GPU sampler. */
  readonly jobGpus: JobGpuMetrics;
  private readonly registry = new Registry();
  private readonly sseClients: Gauge;
  private readonly jobsFinished: Counter<'state' | 'owner'>;
  private readonly queueWait: Histogram;
  private readonly jobDuration: Histogram<'state'>;
  private readonly runtimeErrors: Counter<'op'>;
  private readonly runtimeCalls: Histogram<'op'>;
  private readonly auditWriteFailures: Counter;
  private readonly unauthenticatedRefusals: Counter;
  private readonly attempts: AttemptMetrics;
  private readonly schedulerPasses: Histogram;
  private readonly preemptions: Counter<'rule'>;
  private readonly expiryBrakes: Counter;
  private readonly deciderPasses: Counter;
  private readonly deciderPassSeconds: Histogram;
  private readonly deciderDecisions: Counter;
  /** The term this node decides in now (null: none), once `followDecider` names the decider. */
  private deciderTerm: () => number | null = () => null;
  /** This node's part in the fleet's change relay, once `followRelay` names it. */
  private relay: () => { followers: number; following: boolean } = () => ({ followers: 0, following: false });
  private readonly leftQueue = new BoundedSet(SEEN_CAP);
  private readonly ended = new BoundedSet(SEEN_CAP);

  constructor(src: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    registerCollectors(this.registry, src);
    if (src.health) registerGpuHealthMetrics(registers, src.health);
    this.attempts = new AttemptMetrics(registers);
    this.jobGpus = new JobGpuMetrics(registers);
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
    this.sseClients = new Gauge({
      name: 'gantry_sse_clients',
      help: 'Log followers connected over Server-Sent Events.',
      registers,
    });
    this.registry.registerMetric(this.httpDuration.asMetric());
    this.runtimeErrors = new Counter({
      name: 'gantry_docker_api_errors_total',
      help: 'Docker Engine API calls that failed while driving jobs, by operation.',
      labelNames: ['op'],
      registers,
    });
    // Every op is exported from the start, so that rate() and increase() see the first error.
    for (const op of RUNTIME_OPS) this.runtimeErrors.inc({ op }, 0);
    this.runtimeCalls = new Histogram({
      name: 'gantry_docker_api_call_duration_seconds',
      help: "Docker Engine API calls by operation, from request to answer (waits for a container's exit are not counted: they last as long as the job).",
      labelNames: ['op'],
      buckets: ENGINE_BUCKETS,
      registers,
    });

    this.schedulerPasses = new Histogram({
      name: 'gantry_scheduler_pass_seconds',
      help: "Scheduling passes of this node: from reading the queue's head to the last claim of the jobs it starts.",
      buckets: PASS_BUCKETS,
      registers,
    });

    this.preemptions = new Counter({
      name: 'gantry_job_preemptions_total',
      help: 'Jobs this node preempted for a job with a better claim to their GPUs, by the rule that allowed it (priority, borrowed).',
      labelNames: ['rule'],
      registers,
    });
    for (const rule of PREEMPTION_RULES) this.preemptions.inc({ rule }, 0);

    this.auditWriteFailures = new Counter({
      name: 'gantry_audit_write_failures_total',
      help: 'Audit records that could not be written (the actions they describe stand; each is in the process log at error level).',
      registers,
    });

    this.unauthenticatedRefusals = new Counter({
      name: 'gantry_unauthenticated_refusals_total',
      help: 'State-changing requests refused without a valid token (401): counted here, never stored one by one in the audit trail.',
      registers,
    });

    this.deciderPasses = new Counter({
      name: 'gantry_fleet_decider_passes_total',
      help: "Passes this node ran as the fleet's decider (GANTRY_FLEET_DECIDER=elected), by result: wrote (decisions or a new outcome), unchanged, refused (another node holds a newer term), failed (the store could not be reached).",
      labelNames: ['result'],
      registers,
    });
    for (const result of ['wrote', 'unchanged', 'refused', 'failed']) this.deciderPasses.inc({ result }, 0);
    this.deciderPassSeconds = new Histogram({
      name: 'gantry_fleet_decider_pass_seconds',
      help: "How long this node's passes as the fleet's decider took: the fleet's snapshot read, the decision, and its write.",
      buckets: PASS_BUCKETS,
      registers,
    });
    this.deciderDecisions = new Counter({
      name: 'gantry_fleet_decider_decisions_total',
      help: "What this node's passes as the fleet's decider wrote: jobs assigned to nodes, preemptions, and assignments revoked.",
      labelNames: ['kind'],
      registers,
    });
    for (const kind of ['assign', 'preempt', 'revoke']) this.deciderDecisions.inc({ kind }, 0);
    const term: Gauge = new Gauge({
      name: 'gantry_fleet_decider_term',
      help: 'The term this node decides for the fleet in (GANTRY_FLEET_DECIDER=elected); 0 while it does not. Across the fleet, one node shows a term at a time, and a takeover shows a higher one.',
      registers,
      collect: () => term.set(this.deciderTerm() ?? 0),
    });
    const followers: Gauge = new Gauge({
      name: 'gantry_fleet_relay_followers',
      help: 'Nodes that hear the fleet’s changes through this node’s change relay (GANTRY_FLEET_RELAY); 0 unless this node decides.',
      registers,
      collect: () => followers.set(this.relay().followers),
    });
    const following: Gauge = new Gauge({
      name: 'gantry_fleet_relay_following',
      help: 'Whether this node hears the fleet’s changes through the decider’s relay (1) rather than listening to PostgreSQL itself (0).',
      registers,
      collect: () => following.set(this.relay().following ? 1 : 0),
    });

    this.expiryBrakes = new Counter({
      name: 'gantry_fleet_expiry_brakes_total',
      help: 'Times more than half of the other live nodes looked lost at once to this node, which then declared none of them lost (docs/fleet.md, the brake).',
      registers,
    });

    src.events.onAnyStatus((job) => {
      try {
        this.observeStatus(job);
      } catch {
        // Metrics must never disturb a job's state change.
      }
    });
  }

  /** The Prometheus text exposition of every metric. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** One call to the container runtime failed while driving a job. */
  runtimeError(op: RuntimeOp): void {
    this.runtimeErrors.inc({ op });
  }

  /** One call to the container runtime was answered (or failed) after `seconds`. */
  runtimeCall(op: RuntimeOp, seconds: number): void {
    if (op !== 'wait') this.runtimeCalls.observe({ op }, seconds);
  }

  /** The gauge of the decider's term follows this node's decider. */
  followDecider(term: () => number | null): void {
    this.deciderTerm = term;
  }

  /** The relay's gauges follow this node's part in the fleet's change relay. */
  followRelay(relay: () => { followers: number; following: boolean }): void {
    this.relay = relay;
  }

  /** The fleet's decider ran a pass on this node. */
  deciderPass(pass: DeciderPass): void {
    this.deciderPasses.inc({ result: pass.result });
    this.deciderPassSeconds.observe(pass.seconds);
    if (pass.assigned > 0) this.deciderDecisions.inc({ kind: 'assign' }, pass.assigned);
    if (pass.preempted > 0) this.deciderDecisions.inc({ kind: 'preempt' }, pass.preempted);
    if (pass.revoked > 0) this.deciderDecisions.inc({ kind: 'revoke' }, pass.revoked);
  }

  /** A scheduling pass took `seconds`. */
  schedulerPass(seconds: number): void {
    this.schedulerPasses.observe(seconds);
  }

  /** This node preempted a job, by `rule`. */
  preempted(rule: PreemptionRule): void {
    this.preemptions.inc({ rule });
  }

  /** The brake on expiry held: this node declared no one lost. */
  expiryBraked(): void {
    this.expiryBrakes.inc();
  }

  /** A state-changing request was refused for want of a valid token; how many in all. */
  unauthenticatedRefused(): void {
    this.unauthenticatedRefusals.inc();
  }

  /** An audit record could not be written. */
  auditWriteFailed(): void {
    this.auditWriteFailures.inc();
  }

  /** Counts an SSE follower for as long as its connection lives. */
  trackSse(res: http.ServerResponse): void {
    this.sseClients.inc();
    res.once('close', () => this.sseClients.dec());
  }

  /** Observes a job's queue wait when it first leaves the queue, and its end once. */
  private observeStatus(job: Job): void {
    const now = Date.now();
    this.attempts.observe(job);
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
}
