import { type Allocation, GpuAllocator } from '../gpu/allocator.js';
import type { GpuDevice } from '../gpu/inventory.js';
import type { WaitInfo } from '../model/queue.js';
import { type Assignment, type FleetPreemption, type HeldGpus, type JobRecord, type NodeReport, runSettings } from '../store/store.js';
import { decide, type NodeRun, type QueueView } from './decide.js';
import { misfitOn, placementTarget } from './placement.js';
import { gpusAsked, type PassOutcome, type QueueState } from './queue-state.js';
import type { Quotas } from './quotas.js';

/** A node as the decider sees it: what never changes while its process runs, and its latest report. */
export interface FleetNode {
  name: string;
  labels: Readonly<Record<string, string>>;
  devices: readonly GpuDevice[];
  report: NodeReport;
}

/** The fleet-wide queue as the decider reads it: every queued job, whichever node could run it. */
export type FleetQueue = QueueView & Pick<QueueState, 'isActive' | 'order' | 'all'>;

/** Everything one decider pass decides from, read at one moment; the pass changes none of it. */
export interface FleetInput {
  /** The up nodes whose current process reported, in a fixed order. */
  nodes: readonly FleetNode[];
  queue: FleetQueue;
  /** Assignments written earlier and not yet consumed by their node. */
  assignments: readonly Assignment[];
  /** Preemptions written earlier, one per waiting job. */
  preemptions: readonly FleetPreemption[];
  quotas: Quotas;
  /** The decider's term: assignments of an earlier one can no longer be claimed (store.ts, JobStore.claim). */
  term: number;
  now: number;
}

/** What a decider pass decided, for the store (FleetDecisions) and for the queue's reasons. */
export interface FleetDecision {
  assign: { jobId: string; node: string; gpus: HeldGpus | null }[];
  preempt: Omit<FleetPreemption, 'term'>[];
  revoke: string[];
  settled: string[];
  outcome: PassOutcome;
}

/**
 * One pass of the decider: it wrote decisions (or only a new outcome), had
 * nothing new to write, was refused by the store (another node holds a newer
 * term), or failed (the store could not be read or written).
 */
export interface DeciderPass {
  result: 'wrote' | 'unchanged' | 'refused' | 'failed';
  seconds: number;
  assigned: number;
  preempted: number;
  revoked: number;
}

/**
 * One pass for the whole fleet, as a pure function of its snapshot: each
 * node in turn gets the pass a node makes for itself (decide.ts) on what it
 * reported (its runs, its GPUs as it holds and withholds them, whether it
 * takes jobs), the GPUs and slots of the assignments it has not consumed
 * yet, and the queue without the jobs it can never run and those already
 * given out. A job is given to one node once; the teams' limits count what
 * runs, what is assigned and what this pass gives out, so a quota holds
 * fleet-wide. A waiting job gets at most one preemption at a time, and none
 * when a node starts it in this pass. Assignments to nodes no longer up, and
 * those of an earlier decider's term (no node can claim them any more), are
 * taken back (the latter given out again from the next pass on), and
 * preemptions whose victims all ended, or whose job no longer waits, are
 * settled.
 */
export function decideFleet(input: FleetInput): FleetDecision {
  const up = new Set(input.nodes.map((n) => n.name));
  const revoke = input.assignments.filter((a) => !up.has(a.node) || a.term !== input.term).map((a) => a.jobId);
  // An earlier term's assignment to a node still up is taken back, but its node may have claimed it just
  // before the takeover, unseen yet by the feed or a report: for this pass it still holds its job, slot,
  // GPUs and place in the teams' limits, and the job is given out again no sooner than the next pass.
  const outstanding = input.assignments.filter((a) => up.has(a.node));
  const runs = new Map(input.nodes.flatMap((n) => n.report.runs.map((r) => [r.jobId, { node: n.name, run: r }] as const)));
  const given = new Set([...outstanding.map((a) => a.jobId), ...runs.keys()]);

  const settled: string[] = [];
  const preempting = new Map<string, Set<string>>();
  const stopping = new Set<string>();
  for (const p of input.preemptions) {
    const still = p.victims.filter((v) => {
      const r = runs.get(v.jobId);
      return r !== undefined && r.node === p.node && r.run.attempt === v.attempt;
    });
    if (still.length === 0 || input.queue.all.get(p.waiter) === undefined || given.has(p.waiter)) settled.push(p.waiter);
    else preempting.set(p.waiter, new Set(still.map((v) => v.jobId)));
    for (const v of still) stopping.add(v.jobId);
  }

  const extra = new Map<string, { jobs: number; gpus: number }>();
  const count = (owner: string, gpus: number) => {
    const sum = extra.get(owner) ?? { jobs: 0, gpus: 0 };
    extra.set(owner, { jobs: sum.jobs + 1, gpus: sum.gpus + gpus });
  };
  for (const { jobId } of outstanding) {
    const record = input.queue.all.get(jobId);
    if (record && !input.queue.isActive(jobId) && !runs.has(jobId)) count(record.owner, gpusAsked(record));
  }
  for (const [jobId, { run }] of runs) if (!input.queue.isActive(jobId)) count(run.owner, run.gpus);

  const order = input.queue.order(input.now);
  const assign: FleetDecision['assign'] = [];
  const candidates: FleetDecision['preempt'] = [];
  const outcomes: PassOutcome[] = [];
  for (const node of input.nodes) {
    const gpus = nodeGpus(node, outstanding);
    const unfit = misfitOn(placementTarget(node.name, node.labels, gpus));
    const queue: QueueView = {
      runnableInOrder: (skip) => filtered(input.queue.runnableInOrder(skip, order), (r) => !given.has(r.id) && unfit(r) === null),
      unrunnable: () => new Map(),
      owners: () => input.queue.owners(),
      nextGpuJobOf: (owners) => input.queue.nextGpuJobOf(owners),
      activeOf: (owners) => {
        const base = input.queue.activeOf(owners);
        for (const o of owners) {
          const e = extra.get(o);
          if (e) base.jobs += e.jobs;
          if (e) base.gpus += e.gpus;
        }
        return base;
      },
    };
    const decision = decide({
      idle: node.report.idle,
      shared: true,
      queue,
      runs: nodeRuns(node, outstanding, stopping, input),
      preempting,
      gpus,
      quotas: input.quotas,
      maxRunning: node.report.maxRunning,
      now: input.now,
    });
    for (const { record, alloc } of decision.start) {
      assign.push({ jobId: record.id, node: node.name, gpus: alloc });
      given.add(record.id);
      count(record.owner, gpusAsked(record));
    }
    const p = decision.preempt;
    if (p !== null) {
      const attempt = (id: string) => runs.get(id)?.run.attempt ?? 1;
      candidates.push({ waiter: p.waiter, node: node.name, victims: p.victims.map((v) => ({ ...v, attempt: attempt(v.jobId) })) });
      preempting.set(p.waiter, new Set(p.victims.map((v) => v.jobId)));
    }
    if (decision.outcome.node === null) outcomes.push(decision.outcome);
  }
  // A job a later node started needs no preemption for it.
  const preempt = candidates.filter((c) => !given.has(c.waiter));
  return { assign, preempt, revoke, settled, outcome: merged(outcomes, input.nodes) };
}

/** The node's GPUs as it reported them, with those its outstanding assignments hold. */
function nodeGpus(node: FleetNode, outstanding: readonly Assignment[]): GpuAllocator {
  const gpus = new GpuAllocator(node.devices);
  const withheld = new Map(node.report.withheld.map((w) => [w.uuid, w.why]));
  gpus.withhold((uuid) => withheld.get(uuid) ?? null);
  for (const h of node.report.holdings) gpus.restore(h.jobId, { uuids: h.uuids, memoryMiB: h.memoryMiB });
  for (const a of outstanding) if (a.node === node.name && a.gpus !== null) gpus.restore(a.jobId, a.gpus satisfies Allocation);
  return gpus;
}

/** The node's runs as it reported them, and a run for each assignment it has not consumed yet (it takes a slot). */
function nodeRuns(node: FleetNode, outstanding: readonly Assignment[], stopping: ReadonlySet<string>, input: FleetInput): NodeRun[] {
  const runs: NodeRun[] = node.report.runs.map(({ attempt: _, ...r }) => ({ ...r, preempted: r.preempted || stopping.has(r.jobId) }));
  const reported = new Set(runs.map((r) => r.jobId));
  for (const a of outstanding) {
    if (a.node !== node.name || reported.has(a.jobId)) continue;
    const record: JobRecord | undefined = input.queue.all.get(a.jobId);
    runs.push({
      jobId: a.jobId,
      owner: record?.owner ?? '',
      priority: record?.priority ?? Number.MAX_SAFE_INTEGER,
      preemptible: false,
      startedAt: input.now,
      endsBy: a.gpus === null ? null : input.now + (record ? runSettings(record).timeoutSeconds * 1000 : 0),
      gpus: a.gpus?.uuids.length ?? 0,
      preempted: false,
    });
  }
  return runs;
}

/**
 * The fleet's view of why each job waits: of the nodes that take jobs, the
 * wait that ends soonest (the first node's, when none can tell); when none
 * takes jobs, why the first node does not.
 */
function merged(outcomes: readonly PassOutcome[], nodes: readonly FleetNode[]): PassOutcome {
  const first = outcomes[0];
  if (first === undefined) {
    const idle = nodes[0]?.report.idle;
    const node: WaitInfo = idle
      ? { ...idle, text: `no node of the fleet takes jobs now; node "${nodes[0]!.name}": ${idle.text}` }
      : { code: 'pending', text: 'queued; no node of the fleet has reported to the decider yet', estimatedStartAt: null };
    return { node, decided: new Map(), beyond: { any: null, gpu: null } };
  }
  const decided = new Map<string, WaitInfo>();
  for (const o of outcomes) {
    for (const [id, wait] of o.decided) {
      const known = decided.get(id);
      if (known === undefined || sooner(wait, known)) decided.set(id, wait);
    }
  }
  return { node: null, decided, beyond: first.beyond };
}

function sooner(a: WaitInfo, b: WaitInfo): boolean {
  if (a.estimatedStartAt === null) return false;
  return b.estimatedStartAt === null || a.estimatedStartAt < b.estimatedStartAt;
}

/** The items `keep` accepts, lazily. */
function* filtered<T>(items: Iterable<T>, keep: (item: T) => boolean): IterableIterator<T> {
  for (const item of items) if (keep(item)) yield item;
}

/** The fleet's outcome as the store keeps it (JSON text). */
export function outcomeText(o: PassOutcome): string {
  const owners = o.beyond.owners ? [...o.beyond.owners] : [];
  return JSON.stringify({ node: o.node, decided: [...o.decided], beyond: { any: o.beyond.any, gpu: o.beyond.gpu, owners } });
}

/** The fleet's outcome read back from the store. */
export function outcomeOf(text: string): PassOutcome {
  const o = JSON.parse(text) as {
    node: WaitInfo | null;
    decided: [string, WaitInfo][];
    beyond: { any: WaitInfo | null; gpu: WaitInfo | null; owners: [string, { any: WaitInfo | null; gpu: WaitInfo | null }][] };
  };
  return { node: o.node, decided: new Map(o.decided), beyond: { any: o.beyond.any, gpu: o.beyond.gpu, owners: new Map(o.beyond.owners) } };
}
