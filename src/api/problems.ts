import type { FastifyError, FastifyReply } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  IdempotencyConflictError,
  NotFoundError,
  PolicyViolationError,
  QuotaExceededError,
  type SpecFieldError,
  StoreUnavailableError,
  UnsatisfiableSpecError,
} from '../model/errors.js';

export const PROBLEM_BASE = 'https://gantry.dev/problems/';

export const FieldErrorSchema = z
  .object({ field: z.string().describe('JSON pointer-like path of the field at fault, e.g. "body.mounts.0.source"'), message: z.string() })
  .meta({ id: 'FieldError' });

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    instance: z.string().optional(),
    errors: z.array(FieldErrorSchema).optional(),
  })
  .catchall(z.unknown())
  .meta({
    id: 'Problem',
    description: 'RFC 9457 problem details.',
    example: {
      type: 'https://gantry.dev/problems/validation',
      title: 'Request is invalid',
      status: 422,
      errors: [{ field: 'body.image', message: 'image "docker.io/evil" is not in GANTRY_IMAGE_ALLOWLIST' }],
    },
  });

export type FieldError = z.infer<typeof FieldErrorSchema>;

/** What an application/problem+json response says (`slug` names its type). */
export interface Problem {
  readonly status: number;
  readonly slug: string;
  readonly title: string;
  readonly detail?: string | undefined;
  readonly errors?: FieldError[] | undefined;
  readonly extra?: Record<string, unknown> | undefined;
}

/** A Problem that can be thrown: for refusals only HTTP knows of (authentication, media types). */
export class HttpProblem extends Error implements Problem {
  constructor(
    readonly status: number,
    readonly slug: string,
    readonly title: string,
    readonly detail?: string,
    readonly errors?: FieldError[],
    readonly extra?: Record<string, unknown>,
  ) {
    super(detail ?? title);
  }
}

/**
 * Answers with a problem. An answer that is not an error (the sensor
 * endpoint's 404 and 303 on every poke) passes a plain Problem: an Error
 * would capture a stack trace for nothing on the poll path.
 */
export function sendProblem(reply: FastifyReply, p: Problem): FastifyReply {
  const body: Record<string, unknown> = {
    type: PROBLEM_BASE + p.slug,
    title: p.title,
    status: p.status,
    ...(p.detail !== undefined ? { detail: p.detail } : {}),
    instance: reply.request.url,
    ...(p.errors ? { errors: p.errors } : {}),
    ...p.extra,
  };
  return reply.code(p.status).type('application/problem+json').send(JSON.stringify(body));
}

/** Spec paths as the request names them. */
const bodyFields = (errors: readonly SpecFieldError[]): FieldError[] =>
  errors.map((e) => ({ field: `body.${e.path}`, message: e.message }));
const listed = (errors: FieldError[]) => errors.map((e) => `${e.field}: ${e.message}`).join('; ');

/** What fastify's own 4xx errors are called. */
const FRAMEWORK: Record<number, [slug: string, title: string]> = {
  413: ['payload-too-large', 'Payload too large'],
  415: ['unsupported-media-type', 'Unsupported media type'],
  429: ['rate-limited', 'Too many requests'],
};

/**
 * Every error's answer, in one table: the domain's errors, request
 * validation, fastify's own errors, and anything else as a 500 (which the
 * caller logs). The only place a status code is chosen for an error.
 */
export function problemOf(err: unknown): Problem & { internal?: true; retryAfterSeconds?: number } {
  if (err instanceof HttpProblem) return err;
  if (err instanceof NotFoundError) return { status: 404, slug: 'not-found', title: 'Not found', detail: err.message };
  if (err instanceof PolicyViolationError) {
    const errors = bodyFields(err.errors);
    return { status: 422, slug: 'policy', title: 'Refused by policy', detail: listed(errors), errors };
  }
  if (err instanceof UnsatisfiableSpecError) {
    const errors = bodyFields(err.errors);
    return { status: 422, slug: 'validation', title: 'Request is invalid', detail: listed(errors), errors };
  }
  if (err instanceof IdempotencyConflictError) {
    const errors = [{ field: 'headers.idempotency-key', message: 'this key was used with a different request body' }];
    return { status: 422, slug: 'validation', title: 'Request is invalid', detail: err.message, errors };
  }
  if (err instanceof QuotaExceededError) {
    return {
      status: 429,
      slug: 'quota-exceeded',
      title: 'Quota exceeded',
      detail: `${err.message}; nothing was stored, try again once some have left the queue`,
      retryAfterSeconds: err.retryAfterSeconds,
    };
  }
  if (err instanceof StoreUnavailableError) {
    return err.reason === 'full'
      ? {
          status: 507,
          slug: 'store-full',
          title: 'Storage full',
          detail: `${err.message}; nothing was stored, try again later`,
          retryAfterSeconds: err.retryAfterSeconds,
        }
      : {
          status: 503,
          slug: 'store-unavailable',
          title: 'Store unavailable',
          detail: `${err.message}; nothing was stored, try again later`,
          retryAfterSeconds: err.retryAfterSeconds,
        };
  }
  if (hasZodFastifySchemaValidationErrors(err)) {
    const ctx = err.validationContext ?? 'body';
    const errors = err.validation.flatMap((v) => {
      const at = [ctx, ...v.instancePath.split('/').filter(Boolean)];
      const keys = (v.params as { keys?: string[] }).keys;
      // Unknown keys are reported at the parent; name each refused key.
      if (v.keyword === 'unrecognized_keys' && keys) return keys.map((k) => ({ field: [...at, k].join('.'), message: 'unknown field' }));
      return [{ field: at.join('.'), message: v.message ?? 'invalid' }];
    });
    return { status: 422, slug: 'validation', title: 'Request is invalid', detail: listed(errors), errors };
  }
  const status = (err as FastifyError | null)?.statusCode ?? 500;
  if (status >= 500) {
    return { status, slug: 'internal', title: 'Internal error', detail: 'an internal error occurred; see the Gantry log', internal: true };
  }
  const [slug, title] = FRAMEWORK[status] ?? ['bad-request', 'Bad request'];
  return { status, slug, title, detail: (err as Error).message };
}
