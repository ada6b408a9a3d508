import crypto from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { PolicyConfig } from '../config.js';
import {
  FencedError,
  IdempotencyConflictError,
  NotFoundError,
  PolicyViolationError,
  QuotaExceededError,
  type SpecFieldError,
  UnsatisfiableSpecError,
} from '../model/errors.js';
import type { Job, JobSpec } from '../model/job.js';
import type { Principal } from '../model/principal.js';
import type { WaitInfo } from '../model/queue.js';
import { assertTransition, canTransition, isTerminal, type JobState } from '../model/states.js';
import type { QueueState } from '../scheduling/queue-state.js';
import { QUOTA_RETRY_AFTER_SECONDS, type Quotas } from '../scheduling/quotas.js';
import type { SecretSource } from '../secrets/source.js';
import { type Fence, type JobPatch, type JobRecord, type JobStore, type NewJob, newJobRecord } from '../store/store.js';
import type { JobEventHub } from './events.js';
import { checkPolicy, secretAccessErrors } from './policy.js';
import { cancelledInstead } from './retry-policy.js';
import { resolveRunSettings } from './run-settings.js';
import { Announced, assertOwned, ownedBy, patchApplied, transitionApplied } from './run-writes.js';
import { specHash } from './spec-hash.js';
import { deepFreeze, toJob } from './view.js';

/** Finished jobs whose views are kept (a few KB each). */
const FINISHED_VIEWS_MAX = 10_000;

export interface JobServiceDeps {
  store: JobStore;
  events: JobEventHub;
  queue: QueueState;
  policy: PolicyConfig;
  /** The stop grace a job is submitted with (GANTRY_STOP_GRACE_SECONDS). */
  stopGraceSeconds: number;
  dockerSocket: string;
  /** The teams' limits (GANTRY_QUOTAS_FILE). */
  quotas: Quotas;
  /** Where the secrets a spec names come from (checked at submit: they exist and the owner may use them). */
  secrets: SecretSource;
  /** What this node would do with a job submitted now (the scheduler's dry run). */
  preview: (job: JobRecord) => WaitInfo;
  /** Why no node can ever run the spec (its placement, its GPUs), or null when one can. */
  placementProblem: (spec: JobSpec) => Promise<SpecFieldError | null>;
}

export interface SubmitResult {
  job: Job;
  created: boolean;
}

export interface ListQuery {
  states?: readonly JobState[] | undefined;
  label?: { key: string; value: string } | undefined;
  cursor?: number | undefined;
  limit: number;
}

/**
 * Jobs as their owners see them: submit (policy, idempotency), read, list,
 * cancel; and the one place where a job's state changes (`transition`),
 * which checks the state machine, stores the change as a compare-and-set
 * on the state it read, and tells whoever listens.
 */
export class JobService {
  /**
   * Views keyed by their stored record: a record never changes (a write
   * yields a new one), so its view never does either. Deeply frozen, so the
   * API may remember a view's JSON. A queued job's view is a copy with its
   * current place in the queue.
   */
  private readonly viewByRecord = new WeakMap<JobRecord, Job>();
  /**
   * Views of finished jobs by id. A finished job never changes again, so
   * its view is served without asking the store (with its JSON remembered
   * by the API): status polls of finished jobs cost no store read.
   */
  private readonly finished = new LRUCache<string, Job>({ max: FINISHED_VIEWS_MAX });
  private readonly announced = new Announced(FINISHED_VIEWS_MAX);

  constructor(private readonly d: JobServiceDeps) {}

  async submit(
    principal: Principal,
    spec: JobSpec,
    opts: { idempotencyKey: string | null; requestId: string | null },
  ): Promise<SubmitResult> {
    await this.admit(principal, spec);
    const job = this.newJob(principal, spec, opts, crypto.randomUUID());
    const { record, created } = await this.d.store.insert(job);
    if (!created && record.specHash !== job.specHash) throw new IdempotencyConflictError(opts.idempotencyKey!, record.id);
    if (created) {
      this.d.queue.observe(record);
      this.d.events.publishQueueChanged();
    }
    return { job: await this.view(record), created };
  }

  /**
   * What a submit of the spec would do now, with nothing stored: refused as
   * a submit would be, or the view of the job it would make (id `dry-run`),
   * with where it would stand in the queue and what it would wait for on
   * the answering node.
   */
  async dryRun(principal: Principal, spec: JobSpec): Promise<Job> {
    await this.admit(principal, spec);
    const record = newJobRecord(
      this.newJob(principal, spec, { idempotencyKey: null, requestId: null }, 'dry-run'),
      Number.POSITIVE_INFINITY,
    );
    const waiting = this.d.preview(record);
    return {
      ...toJob(record),
      position: this.d.queue.placeFor(record.owner, record.priority),
      waiting: { code: waiting.code, estimatedStartAt: waiting.estimatedStartAt },
      reason: waiting.text,
    };
  }

  /** The job a submit stores: its run settings resolved once, here, from the spec and this node's configuration. */
  private newJob(
    principal: Principal,
    spec: JobSpec,
    opts: { idempotencyKey: string | null; requestId: string | null },
    id: string,
  ): NewJob {
    return {
      id,
      owner: principal.owner,
      spec,
      specHash: specHash(spec),
      idempotencyKey: opts.idempotencyKey,
      requestId: opts.requestId,
      createdAt: new Date().toISOString(),
      settings: resolveRunSettings(spec, { policy: this.d.policy, stopGraceSeconds: this.d.stopGraceSeconds }),
    };
  }

  /** The checks a submit passes before anything is stored: policy, secrets, placement, the team's queue quota. */
  private async admit(principal: Principal, spec: JobSpec): Promise<void> {
    // Checked against this node's view of the queue: across a fleet, submits
    // racing on other nodes within the change feed's delay can pass it too.
    const team = this.d.quotas.teamOf(principal.owner);
    if (team?.maxQueued !== undefined && this.d.queue.queuedOf(team.owners) >= team.maxQueued) {
      throw new QuotaExceededError(team.name, team.maxQueued, QUOTA_RETRY_AFTER_SECONDS);
    }
    const decision = checkPolicy(spec, principal.owner, this.d.policy, this.d.dockerSocket);
    const refused = [...decision.errors, ...(await secretAccessErrors(spec, principal.owner, this.d.secrets))];
    if (refused.length > 0) throw new PolicyViolationError(refused);
    const unplaceable = await this.d.placementProblem(spec);
    if (unplaceable) throw new UnsatisfiableSpecError([unplaceable]);
  }

  /** A job the principal may see; NotFoundError otherwise (also for other owners' jobs). */
  async visibleRecord(principal: Principal, id: string): Promise<JobRecord> {
    const record = await this.findVisibleRecord(principal, id);
    if (!record) throw new NotFoundError(`job ${id}`);
    return record;
  }

  /** The job's view if it exists and the principal may see it; a miss builds no Error. */
  async findVisible(principal: Principal, id: string): Promise<Job | undefined> {
    const done = this.finished.get(id);
    if (done) return maySee(principal, done.owner) ? done : undefined;
    const record = await this.findVisibleRecord(principal, id);
    return record && this.view(record);
  }

  private async findVisibleRecord(principal: Principal, id: string): Promise<JobRecord | undefined> {
    const record = await this.d.store.get(id);
    return record && maySee(principal, record.owner) ? record : undefined;
  }

  async get(principal: Principal, id: string): Promise<Job> {
    return this.view(await this.visibleRecord(principal, id));
  }

  /** The job's current view, whoever asks (for live followers of a job already checked). */
  async current(id: string): Promise<Job> {
    const record = await this.d.store.get(id);
    if (!record) throw new NotFoundError(`job ${id}`);
    return this.view(record);
  }

  async list(principal: Principal, q: ListQuery): Promise<{ items: Job[]; nextCursor: number | null }> {
    const records = await this.d.store.list({
      owner: principal.isAdmin ? undefined : principal.owner,
      states: q.states,
      label: q.label,
      beforeSeq: q.cursor,
      limit: q.limit + 1,
    });
    const page = records.slice(0, q.limit);
    return {
      items: await Promise.all(page.map((r) => this.view(r))),
      nextCursor: records.length > q.limit ? page[page.length - 1]!.seq : null,
    };
  }

  /**
   * Idempotent: a queued job ends at once, even one a node took (its run's first step then finds it ended: a
   * queued job never holds a cancel, retry-policy.ts); an active one is asked to stop; an ended one is as is.
   * Each write is a compare-and-set on the state read: a job that moved meanwhile is looked at again.
   */
  async cancel(principal: Principal, id: string): Promise<Job> {
    let record = await this.visibleRecord(principal, id);
    for (;;) {
      if (isTerminal(record.state)) return this.view(record);
      if (record.state === 'queued') {
        const patch = { state: 'cancelled' as const, finishedAt: new Date().toISOString(), reason: 'cancelled while queued' };
        const done = await this.d.store.update(id, patch, { state: 'queued' });
        if (done) {
          await this.announce(done);
          this.d.events.publishQueueChanged();
          return this.view(done);
        }
      } else {
        const asked = record.cancelRequested ? record : await this.d.store.update(id, { cancelRequested: true }, { state: record.state });
        if (asked) {
          this.d.events.publishCancelRequested(id);
          return this.view(asked);
        }
      }
      record = (await this.d.store.get(id, { fresh: true }))!;
    }
  }

  /**
   * The only way a job's state changes. The write is a compare-and-set on
   * the state read here, so a concurrent change (a cancel racing the
   * scheduler) is never overwritten: the transition is then checked again
   * against the new state. Resolves undefined when the job has already
   * ended, or the record if it already holds this write (run-writes.ts); an
   * illegal transition is a bug and throws. With a fence (a run's own
   * writes), throws FencedError once the job is no longer that run's. A
   * requeue of a job whose cancel was asked ends it cancelled instead
   * (retry-policy.ts, `cancelledInstead`).
   */
  async transition(id: string, to: JobState, patch: JobPatch = {}, fence?: Fence): Promise<JobRecord | undefined> {
    for (let fresh = false; ; ) {
      const record = await this.d.store.get(id, { fresh });
      if (!record) throw new NotFoundError(`job ${id}`);
      if (transitionApplied(record, to, patch, fence)) {
        // A cached record may lag the store: a repeat succeeds on the store's own word.
        if (fresh) return this.announce(record, true);
        fresh = true;
        continue;
      }
      // A terminal state is final: another writer ended the job first.
      if (isTerminal(record.state)) return undefined;
      const write = to === 'queued' && record.cancelRequested ? cancelledInstead(record, patch, new Date()) : { ...patch, state: to };
      if (!fresh && (!canTransition(record.state, write.state!) || (fence && !ownedBy(record, fence)))) {
        // A cached record may lag the store (this node's own writes are heard of a moment later): a refusal stands on the store's word only.
        fresh = true;
        continue;
      }
      if (fence) assertOwned(record, fence);
      assertTransition(record.state, write.state!);
      const updated = await this.d.store.update(id, write, { state: record.state, fence });
      if (updated) return this.announce(updated);
    }
  }

  /** Back in the queue as the same attempt (no node, no GPUs: nothing of it exists in the engine yet); safe to repeat. */
  requeue(id: string, fence: Fence): Promise<JobRecord | undefined> {
    const back = { reason: null, pullStatus: null, pullProgress: null, gpus: [], gpuMemoryMiB: null, node: null };
    return this.transition(id, 'queued', back, fence);
  }

  /**
   * Updates details without a state change (pull progress, container id,
   * result) and tells followers. With a fence, throws FencedError once the
   * job is no longer that run's, unless the patch moved it on (run-writes.ts).
   */
  async patch(id: string, patch: JobPatch, fence?: Fence): Promise<JobRecord> {
    const updated = await this.d.store.update(id, patch, fence && { fence });
    if (!updated) {
      if (!fence) throw new NotFoundError(`job ${id}`);
      const now = await this.d.store.get(id, { fresh: true });
      if (!now || !patchApplied(now, patch, fence)) throw new FencedError(id, 'it ended or was settled by the fleet meanwhile');
      return this.announce(now, true);
    }
    return this.announce(updated);
  }

  /**
   * The queue follows the record and followers are told; `once` (a record
   * found to hold a repeated write): unless this service told it already.
   */
  private async announce(record: JobRecord, once = false): Promise<JobRecord> {
    if (once && this.announced.has(record)) return record;
    this.d.queue.observe(record);
    this.announced.note(record);
    this.d.events.publishStatus(await this.view(record));
    return record;
  }

  async view(record: JobRecord): Promise<Job> {
    let job = this.viewByRecord.get(record);
    if (job === undefined) {
      job = deepFreeze(toJob(record));
      this.viewByRecord.set(record, job);
      if (isTerminal(record.state)) this.finished.set(record.id, job);
    }
    if (record.state !== 'queued') return job;
    // A queued job's position and wait reason change as the queue moves.
    const waiting = this.d.queue.waiting(record);
    return {
      ...job,
      position: this.d.queue.position(record.id),
      waiting: { code: waiting.code, estimatedStartAt: waiting.estimatedStartAt },
      reason: job.reason ?? waiting.text,
    };
  }

  /**
   * Takes in a job another hand wrote (the fleet settling a lost node's
   * jobs, another node's change): the queue follows it.
   */
  observe(record: JobRecord): void {
    this.d.queue.observe(record);
  }

  /** A job that ended by another node's hand, known by its id only. */
  dequeued(id: string): void {
    this.d.queue.drop(id);
  }

  /**
   * A job another node took or moved on: the queue follows its record when
   * the change carried one. Otherwise it is read the first time, so quotas
   * count it, and again once it runs, so fair share counts its GPU time
   * from its start (one read per run and node).
   */
  async taken(id: string, state: JobState, record: JobRecord | null): Promise<void> {
    if (record) return this.refresh(id, record);
    const unknown = !this.d.queue.isActive(id);
    const startedUncounted = state === 'running' && this.d.queue.fairShare.enabled && !this.d.queue.fairShare.holdingOf(id);
    if (unknown || startedUncounted) await this.refresh(id);
  }

  /** Lets the queue follow another node's change of the job: the record it carried, or the job read again. */
  async refresh(id: string, carried: JobRecord | null = null): Promise<void> {
    const record = carried ?? (await this.d.store.get(id));
    if (record) this.d.queue.observe(record);
  }
}

/** An owner sees its own jobs; an admin sees every job. */
function maySee(principal: Principal, owner: string): boolean {
  return principal.isAdmin || owner === principal.owner;
}
