/**
 * The domain's own errors. They say what went wrong in the domain's terms
 * (field paths are relative to the job spec: `image`, `mounts.0.source`);
 * only the API layer turns them into HTTP answers (src/api/problems.ts).
 */

/** A field of the job spec at fault, by its path in the spec. */
export interface SpecFieldError {
  path: string;
  message: string;
}

export abstract class DomainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** No such job, or one the caller may not see (the two are not told apart). */
export class NotFoundError extends DomainError {
  constructor(readonly what: string) {
    super(`${what} does not exist`);
  }
}

/** The idempotency key was used before, for another spec. */
export class IdempotencyConflictError extends DomainError {
  constructor(
    readonly key: string,
    readonly jobId: string,
  ) {
    super(`Idempotency-Key "${key}" was already used for job ${jobId} with another body`);
  }
}

/** The operator's policy refuses the spec. */
export class PolicyViolationError extends DomainError {
  constructor(readonly errors: readonly SpecFieldError[]) {
    super(errors.map((e) => `${e.path}: ${e.message}`).join('; '));
  }
}

/** The owner's team has as many jobs queued as its quota allows; the submit may be tried again later. */
export class QuotaExceededError extends DomainError {
  constructor(
    readonly team: string,
    readonly limit: number,
    readonly retryAfterSeconds: number,
  ) {
    super(`team "${team}" has ${limit} jobs queued, its maxQueued in GANTRY_QUOTAS_FILE`);
  }
}

/** The spec is well-formed but can never be met here (e.g. more GPUs than the host has). */
export class UnsatisfiableSpecError extends DomainError {
  constructor(readonly errors: readonly SpecFieldError[]) {
    super(errors.map((e) => `${e.path}: ${e.message}`).join('; '));
  }
}

/**
 * The store cannot take writes now (its disk is full, or it cannot be
 * reached). Nothing was changed, unless the connection dropped after a
 * commit, before its reply; the same request may succeed later.
 */
export class StoreUnavailableError extends DomainError {
  constructor(
    readonly reason: 'full' | 'unavailable',
    detail: string,
    readonly retryAfterSeconds = 30,
  ) {
    super(detail);
  }
}

/**
 * A write by a node about a job that node no longer owns: the fleet
 * declared the node lost meanwhile and settled the job (failed it, or
 * queued a new attempt). The node must stop the job's container and write
 * nothing more about it.
 */
export class FencedError extends DomainError {
  constructor(
    readonly jobId: string,
    detail: string,
  ) {
    super(`job ${jobId} is no longer this node's: ${detail}`);
  }
}
