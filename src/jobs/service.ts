import crypto from 'node:crypto';
import type { Principal } from '../auth/tokens.js';
import { deepFreeze } from '../api/frozen-json.js';
import { problems } from '../api/problem.js';
import type { JobHub } from '../logs/hub.js';
import { JobsRepo, toJob, type JobPatch, type JobRow } from '../store/jobs-repo.js';
import type { Job, JobSpec } from './schema.js';
import { assertTransition, isTerminal, type JobState } from './states.js';

/** Hooks the scheduler installs so the service can wake it and stop containers. */
export interface JobController {
  /** A job was queued or resources were freed: look at the queue again. */
  kick(): void;
  /** Stop the job's container (SIGTERM, grace, SIGKILL); it then ends as cancelled. */
  cancelActive(jobId: string): void;
  /** Whether the scheduler has taken the job (it may still read `queued`). */
  isLaunched(jobId: string): boolean;
  /** Why a queued job is still waiting, if known. */
  waitReason(jobId: string): string | null;
  /** Rejects a GPU request that can never be met on this host. */
  impossibleGpuRequest(spec: JobSpec): string | null;
}

export interface SubmitResult {
  job: Job;
  created: boolean;
}

/** Canonical JSON: object keys sorted, so equal specs hash equally whatever the key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function specHash(spec: JobSpec): string {
  return crypto.createHash('sha256').update(canonical(spec)).digest('hex');
}

/**
 * Jobs as the API sees them: submit (with idempotency), read, list, cancel,
 * and the one place where a job's state changes (transition), which checks
 * the state machine, persists, and tells live followers.
 */
export class JobService {
  private controller: JobController | null = null;
  /**
   * Views of jobs keyed by their cached row (frozen, see JobsRepo.get): such
   * a view depends on the row alone, and any write to the job replaces the
   * row object and so drops the view with it. Deeply frozen, so the status
   * poll can reuse its JSON (src/api/frozen-json.ts). A queued job's view is
   * a copy of it with the job's current place in the queue.
   */
  private readonly viewByRow = new WeakMap<JobRow, Job>();

  constructor(
    readonly repo: JobsRepo,
    private readonly hub: JobHub,
  ) {}

  attach(controller: JobController): void {
    this.controller = controller;
  }

  private get ctl(): JobController {
    if (!this.controller) throw new Error('JobService used before the scheduler attached');
    return this.controller;
  }

  submit(
    principal: Principal,
    spec: JobSpec,
    opts: { idempotencyKey: string | null; requestId: string | null },
  ): SubmitResult {
    const hash = specHash(spec);
    if (opts.idempotencyKey !== null) {
      // better-sqlite3 is synchronous: lookup and insert below run without
      // any other request in between, so two racing submits cannot both
      // insert; the unique index is the backstop.
      const prior = this.repo.getByIdempotencyKey(principal.owner, opts.idempotencyKey);
      if (prior) {
        if (prior.spec_hash !== hash) {
          throw problems.validation(
            [{ field: 'headers.idempotency-key', message: 'this key was used with a different request body' }],
            `Idempotency-Key "${opts.idempotencyKey}" was already used for job ${prior.id} with another body`,
          );
        }
        return { job: this.view(prior), created: false };
      }
    }
    const impossible = this.ctl.impossibleGpuRequest(spec);
    if (impossible) throw problems.validation([{ field: 'body.gpus', message: impossible }]);
    const row = this.repo.insert({
      id: crypto.randomUUID(),
      owner: principal.owner,
      spec,
      specHash: hash,
      idempotencyKey: opts.idempotencyKey,
      requestId: opts.requestId,
      createdAt: new Date().toISOString(),
    });
    this.ctl.kick();
    return { job: this.view(row), created: true };
  }

  /** A job the principal may see, or 404 (also for other owners' jobs). */
  visibleRow(principal: Principal, id: string): JobRow {
    const row = this.findVisibleRow(principal, id);
    if (!row) throw problems.notFound(`job ${id}`);
    return row;
  }

  /** The job's view if it exists and the principal may see it (the status fast path: no Error built for a miss). */
  findVisible(principal: Principal, id: string): Job | undefined {
    const row = this.findVisibleRow(principal, id);
    return row && this.view(row);
  }

  private findVisibleRow(principal: Principal, id: string): JobRow | undefined {
    const row = this.repo.get(id);
    return row && (principal.isAdmin || row.owner === principal.owner) ? row : undefined;
  }

  get(principal: Principal, id: string): Job {
    return this.view(this.visibleRow(principal, id));
  }

  list(
    principal: Principal,
    q: { states?: JobState[] | undefined; label?: { key: string; value: string } | undefined; cursor?: number | undefined; limit: number },
  ): { items: Job[]; nextCursor: number | null } {
    const rows = this.repo.list({
      owner: principal.isAdmin ? undefined : principal.owner,
      states: q.states,
      label: q.label,
      beforeSeq: q.cursor,
      limit: q.limit + 1,
    });
    const page = rows.slice(0, q.limit);
    return {
      items: page.map((r) => this.view(r)),
      nextCursor: rows.length > q.limit ? page[page.length - 1]!.seq : null,
    };
  }

  /** Idempotent: a queued job is never started; an active one is stopped; a finished one is returned as is. */
  cancel(principal: Principal, id: string): Job {
    const row = this.visibleRow(principal, id);
    if (isTerminal(row.state)) return this.view(row);
    // A job the scheduler already took is still `queued` in the store until
    // its first step; it is stopped like an active one.
    if (row.state === 'queued' && !this.ctl.isLaunched(id)) {
      const done = this.transition(id, 'cancelled', { finished_at: new Date().toISOString(), reason: 'cancelled while queued' });
      this.ctl.kick();
      return this.view(done);
    }
    if (row.cancel_requested === 0) this.repo.update(id, { cancel_requested: 1 });
    this.ctl.cancelActive(id);
    return this.view(this.repo.get(id)!);
  }

  /** The only way a job's state changes. */
  transition(id: string, to: JobState, patch: JobPatch = {}): JobRow {
    const row = this.repo.get(id);
    if (!row) throw new Error(`job ${id} vanished from the store`);
    assertTransition(row.state, to);
    const updated = this.repo.update(id, { ...patch, state: to });
    this.hub.publishStatus(this.view(updated));
    return updated;
  }

  /** Updates details without a state change (pull progress, result) and tells followers. */
  patch(id: string, patch: JobPatch): JobRow {
    const updated = this.repo.update(id, patch);
    this.hub.publishStatus(this.view(updated));
    return updated;
  }

  view(row: JobRow): Job {
    let job = this.viewByRow.get(row);
    if (job === undefined) {
      job = deepFreeze(toJob(row, null));
      this.viewByRow.set(row, job);
    }
    if (row.state !== 'queued') return job;
    // A queued job's position and wait reason change as the queue moves.
    return {
      ...job,
      position: this.repo.queuePositions().get(row.id) ?? null,
      reason: job.reason ?? this.controller?.waitReason(row.id) ?? null,
    };
  }
}
