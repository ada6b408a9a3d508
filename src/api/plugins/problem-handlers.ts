import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import fp from 'fastify-plugin';
import { HttpProblem, problemOf, sendProblem } from '../problems.js';

/** Every error a route throws, and every unknown route, answers problem+json (problemOf decides how). */
export const problemHandlers = fp(
  async (app: FastifyInstance) => {
    app.setErrorHandler((err, request, reply) => {
      const problem = problemOf(err);
      if (problem.internal) request.log.error({ err }, 'request failed');
      if (problem.retryAfterSeconds !== undefined) reply.header('Retry-After', String(problem.retryAfterSeconds));
      return sendProblem(reply, problem);
    });
    app.setNotFoundHandler((request, reply) =>
      sendProblem(reply, new HttpProblem(404, 'not-found', 'Not found', `no route for ${request.method} ${request.url.split('?')[0]}`)),
    );
  },
  { name: 'gantry-problem-handlers' },
);

/**
 * Fastify's `frameworkErrors` option: errors raised while routing, before any
 * handler or error handler (a path parameter longer than the router allows,
 * a malformed percent-encoding), answer problem+json like everything else.
 */
export function frameworkErrorHandler(err: FastifyError, _request: unknown, reply: FastifyReply): FastifyReply {
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    return sendProblem(reply, new HttpProblem(414, 'uri-too-long', 'URI too long', 'a path parameter is longer than any Gantry id'));
  }
  return sendProblem(
    reply,
    new HttpProblem(err.statusCode && err.statusCode < 500 ? err.statusCode : 400, 'bad-request', 'Bad request', err.message),
  );
}
