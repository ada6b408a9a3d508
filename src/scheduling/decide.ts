import type { Allocation, GpuAllocator } from '../gpu/allocator.js';
import type { SpecFieldError } from '../model/errors.js';
import type { WaitInfo } from '../model/queue.js';
import { type JobRecord, runSettings } from '../store/store.js';
import { planQueue, type QueueEntry } from './plan.js';
import { choosePreemption, type RunningJob, type Victim } from './preemption.js';
import { beyondWait, type PassOutcome, type QueueState } from './queue-state.js';
import { type Quotas, TeamLimits } from './quotas.js';

/** A run this node owns, as a pass reads it. */
export interface NodeRun extends RunningJob {
  /** When its GPUs are free at the latest (its deadline, or launch plus timeout); null for a CPU job. */
  endsBy: number | null;
  /** Whether a preemption already stops it. */
  preempted: boolean;
}

/** Everything one pass decides from, read at one moment; the pass changes none of it. */
export interface PassInput {
  /** Why this node takes no job now (engine away, no lease, drained), or null when it does. */
  idle: WaitInfo | null;
  /** Whether other nodes share the queue: a job this node can never run then waits for one that can, instead of failing. */
  shared: boolean;
  /** The queue in order, as this node knows it. */
  queue: QueueView;
  runs: readonly NodeRun[];
  /** The jobs preempted for each waiting job that still run. */
  preempting: ReadonlyMap<string, ReadonlySet<string>>;
  /** This node's GPUs as held now; the pass tries its allocations on a copy. */
  gpus: GpuAllocator;
  quotas: Quotas;
  maxRunning: number;
  now: number;
}

/** What a pass decided; applying it (claims, runs, stores) is the scheduler's. */
export interface PassDecision {
  /** Jobs this node alone can never run: they fail, with why. */
  fail: { id: string; reason: string }[];
  /** Jobs to claim and start, in order, each with the GPUs chosen for it. */
  start: { record: JobRecord; alloc: Allocation | null }[];
  /** Running jobs to preempt for the job holding the GPU reservation, if any may be. */
  preempt: { waiter: string; victims: Victim[] } | null;
  /** Why the rest wait, once the starts are applied. */
  outcome: PassOutcome;
}

/** The queue as a pass reads it. */
export type QueueView = Pick<QueueState, 'runnableInOrder' | 'unrunnable' | 'activeOf' | 'owners' | 'nextGpuJobOf'>;

/**
 * One scheduling pass, as a pure function of what the node knows now: which
 * queued jobs start here (in the fleet-wide order, within the run slots, the
 * GPUs and the teams' limits; see plan.ts for the reservation and backfill),
 * which wait and why, which preemptible runs give way to the job holding the
 * GPU reservation (preemption.ts), and, on a node alone, which jobs can never
 * run here. A job this node already runs is never started again.
 */
export function decide(input: PassInput): PassDecision {
  if (input.idle !== null) return { fail: [], start: [], preempt: null, outcome: nothingDecided(input.idle) };
  const fail = input.shared
    ? []
    : [...input.queue.unrunnable()].map(([id, unfit]) => ({
        id,
        reason: `its spec can no longer be met on this host: ${unfit.path}: ${unfit.message}`,
      }));
  const pass = plan(input, (skip) => input.queue.runnableInOrder(skip), input.queue.owners());
  const preempt = preemptionFor(input, pass);
  return { fail, start: pass.start, preempt, outcome: pass.outcome };
}

/**
 * What this node would do with the job were it submitted now (a dry run):
 * the same pass over the head of the queue, on a copy of the GPUs, with the
 * job in its place after those of a higher or equal priority (they came
 * first). Nothing is preempted for a job that is only previewed.
 */
export function preview(input: PassInput, job: JobRecord, node: { name: string; unfit: SpecFieldError | null }): WaitInfo {
  if (input.idle !== null) return input.idle;
  if (node.unfit !== null) {
    return {
      code: 'not_here',
      text: `node "${node.name}" cannot run it (${node.unfit.path}: ${node.unfit.message})`,
      estimatedStartAt: null,
    };
  }
  const gpu = job.spec.gpus !== undefined;
  const upTo = function* (skip: (owner: string, gpu: boolean) => boolean) {
    for (const r of input.queue.runnableInOrder(skip)) {
      if (r.priority < job.priority) break;
      yield r;
    }
    if (!skip(job.owner, gpu)) yield job;
  };
  const pass = plan(input, upTo, [job.owner]);
  if (pass.start.some((s) => s.record.id === job.id)) {
    return { code: 'pending', text: `would start at once on node "${node.name}"`, estimatedStartAt: new Date(input.now).toISOString() };
  }
  const { decided, beyond } = pass.outcome;
  const mine = decided.get(job.id);
  if (mine) return mine;
  return beyondWait(beyond, job.owner, gpu) ?? { code: 'pending', text: 'queued', estimatedStartAt: null };
}

interface Pass {
  start: PassDecision['start'];
  outcome: PassOutcome;
  /** The jobs that wait, in pass order, with their records. */
  waiting: Map<string, { record: JobRecord; wait: WaitInfo }>;
  /** The GPUs as the pass left them (its starts allocated). */
  gpus: GpuAllocator;
}

/** The pass over `jobs` (in queue order; `skip` closes whole queues) on a copy of the GPUs. */
function plan(
  input: PassInput,
  jobs: (skip: (owner: string, gpu: boolean) => boolean) => Iterable<JobRecord>,
  owners: Iterable<string>,
): Pass {
  const running = new Set(input.runs.map((r) => r.jobId));
  const seen = new Map<string, JobRecord>();
  const gpus = input.gpus.clone();
  const limits = input.quotas.teams().length > 0 ? new TeamLimits(input.quotas, input.queue) : null;
  const result = planQueue({
    queue: (skip) =>
      mapped(jobs(skip), (r) => {
        if (running.has(r.id)) return null;
        seen.set(r.id, r);
        return entry(r);
      }),
    limits,
    gpus,
    freeSlots: input.maxRunning - input.runs.length,
    maxRunning: input.maxRunning,
    running: input.runs.flatMap((r) => (r.endsBy === null ? [] : [{ jobId: r.jobId, endsBy: r.endsBy }])),
    now: input.now,
  });
  const start: PassDecision['start'] = [];
  const waiting = new Map<string, { record: JobRecord; wait: WaitInfo }>();
  const decided = new Map<string, WaitInfo>();
  for (const d of result.decisions) {
    const record = seen.get(d.id)!;
    if (d.action === 'start') {
      start.push({ record, alloc: d.alloc });
    } else {
      waiting.set(d.id, { record, wait: d.wait });
      decided.set(d.id, d.wait);
    }
  }
  const outcome = { node: null, decided, beyond: { ...result.beyond, owners: closedQueues(limits, owners) } };
  return { start, outcome, waiting, gpus };
}

/** A queued job as the queue policy sees it. */
function entry(r: JobRecord): QueueEntry {
  return {
    id: r.id,
    owner: r.owner,
    gpus: r.spec.gpus,
    model: r.spec.placement?.gpuModel,
    timeoutSeconds: runSettings(r).timeoutSeconds,
  };
}

/**
 * Preemption, for the job holding the GPU reservation (the first that waits
 * for GPUs; `waiting` is in pass order): the preemptible runs that may give
 * way to it by a rule. Nothing more is taken for it while those it already
 * preempted still stop; its wait says which they are.
 */
function preemptionFor(input: PassInput, pass: Pass): PassDecision['preempt'] {
  const holder = [...pass.waiting].find(([, w]) => w.wait.code === 'gpus');
  if (holder === undefined) return null;
  const [id, { record, wait }] = holder;
  const decided = pass.outcome.decided as Map<string, WaitInfo>;
  // The wait is read by the waiting job's owner: it names only that owner's own victims.
  const ownerOf = new Map(input.runs.map((r) => [r.jobId, r.owner]));
  const explain = (victims: Iterable<string>) => {
    const all = [...victims];
    const own = all.filter((v) => ownerOf.get(v) === record.owner).map((v) => `job ${v}`);
    const others = all.length - own.length;
    const named = others === 0 ? own : [...own, `${others} job${others === 1 ? '' : 's'} of other owners`];
    decided.set(id, { ...wait, text: `${wait.text}; preempting ${named.join(', ')} for it` });
  };
  const pending = input.preempting.get(id);
  if (pending !== undefined) {
    explain(pending);
    return null;
  }
  if (record.spec.gpus === undefined) return null;
  const victims = choosePreemption({
    waiting: { jobId: id, owner: record.owner, priority: record.priority, gpus: record.spec.gpus, model: record.spec.placement?.gpuModel },
    running: input.runs.filter((r) => !r.preempted),
    gpus: pass.gpus,
    quotas: input.quotas,
    teamGpus: (team) => input.queue.activeOf(team.owners).gpus,
  });
  if (victims === null) return null;
  explain(victims.map((v) => v.jobId));
  return { waiter: id, victims };
}

function nothingDecided(node: WaitInfo | null): PassOutcome {
  return { node, decided: new Map(), beyond: { any: null, gpu: null } };
}

/** The iterable's items through `fn`, lazily, leaving out those it maps to null. */
function* mapped<T, U>(items: Iterable<T>, fn: (item: T) => U | null): IterableIterator<U> {
  for (const item of items) {
    const out = fn(item);
    if (out !== null) yield out;
  }
}

/** Why each owner's queues that the pass's limits closed wait, by owner. */
function closedQueues(limits: TeamLimits | null, owners: Iterable<string>): Map<string, { any: WaitInfo | null; gpu: WaitInfo | null }> {
  const closed = new Map<string, { any: WaitInfo | null; gpu: WaitInfo | null }>();
  if (limits === null) return closed;
  for (const owner of owners) {
    const any = limits.closed(owner, false);
    const gpu = limits.closed(owner, true);
    if (any || gpu) closed.set(owner, { any, gpu: gpu ?? any });
  }
  return closed;
}
