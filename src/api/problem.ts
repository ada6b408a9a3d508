import { z } from 'zod';
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';

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

/** A Problem that can be thrown: any handler may throw it and get its response. */
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

export const problems = {
  validation: (errors: FieldError[], detail?: string) =>
    new HttpProblem(422, 'validation', 'Request is invalid', detail ?? errors.map((e) => `${e.field}: ${e.message}`).join('; '), errors),
  policy: (errors: FieldError[]) =>
    new HttpProblem(422, 'policy', 'Refused by policy', errors.map((e) => `${e.field}: ${e.message}`).join('; '), errors),
  notFound: (what: string) => new HttpProblem(404, 'not-found', 'Not found', `${what} does not exist`),
};

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

/** Maps every error (ours, validation, fastify's own) to problem+json. */
export function installProblemHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | HttpProblem, request, reply) => {
    if (err instanceof HttpProblem) return sendProblem(reply, err);
    if (hasZodFastifySchemaValidationErrors(err)) {
      const ctx = err.validationContext ?? 'body';
      const errors = err.validation.map((v) => {
        const at = [ctx, ...v.instancePath.split('/').filter(Boolean)];
        const keys = (v.params as { keys?: string[] }).keys;
        // Unknown keys are reported at the parent; name each refused key.
        if (v.keyword === 'unrecognized_keys' && keys) {
          return keys.map((k) => ({ field: [...at, k].join('.'), message: 'unknown field' }));
        }
        return [{ field: at.join('.'), message: v.message ?? 'invalid' }];
      });
      return sendProblem(reply, problems.validation(errors.flat()));
    }
    const status = err.statusCode ?? 500;
    if (status >= 500) {
      request.log.error({ err }, 'request failed');
      return sendProblem(reply, new HttpProblem(status, 'internal', 'Internal error', 'an internal error occurred; see the Gantry log'));
    }
    const slug =
      status === 415 ? 'unsupported-media-type' : status === 413 ? 'payload-too-large' : status === 429 ? 'rate-limited' : 'bad-request';
    const title = status === 415 ? 'Unsupported media type' : status === 413 ? 'Payload too large' : status === 429 ? 'Too many requests' : 'Bad request';
    return sendProblem(reply, new HttpProblem(status, slug, title, err.message));
  });
}

/**
 * Fastify's `frameworkErrors` option: errors raised while routing, before any
 * handler or error handler (a path parameter longer than the router allows,
 * a malformed percent-encoding), answer problem+json like everything else.
 */
export function frameworkErrorHandler(err: FastifyError, _request: unknown, reply: FastifyReply): FastifyReply {
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    return sendProblem(reply, new HttpProblem(414, 'uri-too-long', 'URI too long', 'a path parameter is longer than any Gantry id'));
  }
  return sendProblem(reply, new HttpProblem(err.statusCode && err.statusCode < 500 ? err.statusCode : 400, 'bad-request', 'Bad request', err.message));
}

/** Unknown routes answer problem+json too (set once, on the root instance). */
export function installNotFoundHandler(app: FastifyInstance): void {
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, new HttpProblem(404, 'not-found', 'Not found', `no route for ${request.method} ${request.url.split('?')[0]}`)),
  );
}
