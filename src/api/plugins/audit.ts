import type { FastifyInstance, FastifyReply, FastifyRequest, onSendHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import type { TokenStore } from '../../auth/tokens.js';
import type { GantryMetrics } from '../../metrics/registry.js';
import type { AuditAction, AuditDetail, AuditOutcome, NewAuditRecord } from '../../model/audit.js';
import type { AuditStore } from '../../store/store.js';
import { bearerPrincipal } from './auth.js';
import { clientRequestIdOf } from './request-context.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** How the audit trail records a state-changing route (plugins/audit.ts); every such /v1 route names one. */
    audit?: { action: AuditAction };
  }
}

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** A refusal names few fields; a body of thousands of unknown keys must not make a record that large. */
const MAX_FIELDS = 20;
const MAX_FIELD_LENGTH = 200;

/** At most one process log line a minute sums up the unauthenticated refusals (each is counted in a metric, none stored). */
const UNAUTHENTICATED_LOG_MS = 60_000;

export type AuditWrite = (record: NewAuditRecord) => Promise<void>;

/**
 * A path parameter as the request sent it, printable: a backslash doubled,
 * and every control, format or otherwise unprintable character (NUL, ANSI
 * escapes, bidi overrides, line separators) written `\uXXXX`, so a stored
 * target cannot rewrite the terminal or the page that shows it.
 */
export function printable(s: string): string {
  return s.replace(/\\|[\p{C}\p{Zl}\p{Zp}]/gu, (c) =>
    c === '\\' ? '\\\\' : [...c].map((u) => `\\u${u.codePointAt(0)!.toString(16).padStart(4, '0')}`).join(''),
  );
}

/**
 * Appends records and never rejects: the action a record describes stands
 * whether or not the record could be written, so a failed write is logged at
 * error level (with the record, which holds no secret) and counted in
 * gantry_audit_write_failures_total.
 */
export function auditWriter(o: { audit: AuditStore; metrics: GantryMetrics; log: { error(obj: object, msg: string): void } }): AuditWrite {
  return async (record) => {
    try {
      await o.audit.append(record);
    } catch (err) {
      o.metrics.auditWriteFailed();
      o.log.error({ err, audit: record }, 'audit record not written; the action it describes stands');
    }
  };
}

function outcomeOf(status: number): AuditOutcome {
  return status < 400 ? 'ok' : status < 500 ? 'refused' : 'failed';
}

/** The problem+json an answer carried: its `type`, and the fields it named (paths only, never the messages, which may quote values). */
function answeredProblem(reply: FastifyReply, payload: unknown): { type: string | null; fields: string[] } {
  const none = { type: null, fields: [] };
  if (typeof payload !== 'string' || !String(reply.getHeader('content-type') ?? '').startsWith('application/problem+json')) return none;
  try {
    const body = JSON.parse(payload) as { type?: unknown; errors?: { field?: unknown }[] };
    const fields = (Array.isArray(body.errors) ? body.errors : [])
      .map((e) => e?.field)
      .filter((f): f is string => typeof f === 'string')
      .slice(0, MAX_FIELDS)
      .map((f) => f.slice(0, MAX_FIELD_LENGTH));
    return { type: typeof body.type === 'string' ? body.type : null, fields };
  } catch {
    return none;
  }
}

/**
 * The audit trail of the HTTP API: every answer of a state-changing /v1
 * route (POST, PUT, PATCH, DELETE) is recorded, refusals included, by an
 * onSend hook the route gets here, awaited before the answer goes out, so
 * every answer a client saw has its record. A route declares its action in
 * `config.audit`; a state-changing /v1 route that declares none stops the
 * start, so no such route goes unrecorded. Reads are not recorded.
 *
 * A record names the token's owner, the action, its target (the path's last
 * parameter, printable, or else the resource the request created, by its
 * Location), the outcome with the status and problem type, and the request
 * id (Gantry's own, with the client's X-Request-Id beside it as a claim);
 * never the request's body, its headers or the token. A request without a
 * valid token (401) is not recorded: see `unauthenticated`.
 */
export const auditTrail = fp(
  async (app: FastifyInstance, o: { audit: AuditStore; metrics: GantryMetrics; tokens: TokenStore; node: string }) => {
    const write = auditWriter({ audit: o.audit, metrics: o.metrics, log: app.log });

    /**
     * The admitted principal's owner; on a refusal, the owner of a valid
     * token that lacked the scope (the auth hook admits no principal then);
     * null without a valid token.
     */
    const actorOf = (request: FastifyRequest): string | null => {
      if (request.principal) return request.principal.owner;
      return bearerPrincipal(o.tokens, request.headers.authorization)?.owner ?? null;
    };

    const targetOf = (request: FastifyRequest, reply: FastifyReply): string | null => {
      const params = Object.values((request.params ?? {}) as Record<string, string>);
      if (params.length > 0) return printable(params.at(-1)!);
      const location = reply.getHeader('location');
      return typeof location === 'string' ? location.slice(location.lastIndexOf('/') + 1) : null;
    };

    /**
     * Anyone who reaches the port can be refused: such refusals are counted
     * (gantry_unauthenticated_refusals_total) and summed up in the process
     * log at most once a minute, never stored one by one, so they cannot
     * fill the trail or the database.
     */
    let unlogged = 0;
    let loggedAt = 0;
    const unauthenticated = () => {
      o.metrics.unauthenticatedRefused();
      unlogged += 1;
      const now = Date.now();
      if (now - loggedAt < UNAUTHENTICATED_LOG_MS) return;
      app.log.warn({ refused: unlogged }, 'state-changing requests refused without a valid token since the last such line');
      unlogged = 0;
      loggedAt = now;
    };

    app.addHook('onRoute', (route) => {
      const methods = [route.method].flat();
      const declared = route.config?.audit;
      if (declared === undefined) {
        if (route.url.startsWith('/v1/') && methods.some((m) => STATE_CHANGING.has(m))) {
          throw new Error(`${methods.join(',')} ${route.url} changes state but names no audit action (route config.audit)`);
        }
        return;
      }
      const record: onSendHookHandler = async (request, reply, payload) => {
        if (reply.statusCode === 401) {
          unauthenticated();
          return payload;
        }
        const outcome = outcomeOf(reply.statusCode);
        const problem = outcome === 'ok' ? undefined : answeredProblem(reply, payload);
        const detail: AuditDetail = problem?.fields.length ? { fields: problem.fields } : {};
        await write({
          node: o.node,
          actor: actorOf(request),
          action: declared.action,
          target: targetOf(request, reply),
          outcome,
          status: reply.statusCode,
          problemType: problem?.type ?? null,
          requestId: request.id,
          clientRequestId: clientRequestIdOf(request),
          detail,
        });
        return payload;
      };
      const own = route.onSend === undefined ? [] : Array.isArray(route.onSend) ? route.onSend : [route.onSend];
      route.onSend = [...own, record] as typeof route.onSend;
    });
  },
  { name: 'gantry-audit', dependencies: ['gantry-auth'] },
);
