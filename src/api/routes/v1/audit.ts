import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { AuditListSchema, AuditQuerySchema } from '../../../model/audit.js';
import type { AuditStore } from '../../../store/store.js';
import { examples } from '../../examples.js';
import { errorResponses, jsonResponse, problemResponse } from '../common.js';

/** An RFC 3339 time as the stores compare it: UTC, milliseconds, as `toISOString` writes it. */
const utc = (time: string | undefined) => (time === undefined ? undefined : new Date(time).toISOString());

/** /v1/audit: the audit trail (plugins/audit.ts writes it), for admins. */
export const auditRoutes: FastifyPluginAsyncZod<{ audit: AuditStore }> = async (app, { audit }) => {
  app.get(
    '/v1/audit',
    {
      onRequest: app.auth('admin'),
      schema: {
        operationId: 'listAudit',
        summary: 'The audit trail: who changed what, and how it ended, newest first',
        description:
          'Admin only. One record per state-changing request (submit, cancel, drain, undrain), refused ones included (but not those without a valid token: they are only counted, in gantry_unauthenticated_refusals_total), ' +
          'and per reload asked of a node (SIGHUP); from every node of a fleet. Records hold no request content. ' +
          'Records older than GANTRY_AUDIT_RETENTION_DAYS are deleted, by the store’s clock.',
        tags: ['audit'],
        security: [{ bearer: [] }],
        querystring: AuditQuerySchema,
        response: {
          200: jsonResponse(AuditListSchema, {
            description: 'A page of records',
            example: { items: examples.auditRecords, nextCursor: String(examples.auditRecords.at(-1)!.seq) },
          }),
          ...errorResponses(401, 422),
          403: problemResponse(403, 'The token is not an admin’s', { ...examples.notAdmin, instance: '/v1/audit' }),
        },
      },
    },
    async (request) => {
      const q = request.query;
      const records = await audit.list({
        actor: q.actor,
        action: q.action,
        target: q.target,
        outcome: q.outcome,
        from: utc(q.from),
        to: utc(q.to),
        beforeSeq: q.cursor === undefined ? undefined : Number(q.cursor),
        limit: q.limit + 1,
      });
      const items = records.slice(0, q.limit);
      return { items, nextCursor: records.length > q.limit ? String(items.at(-1)!.seq) : null };
    },
  );
};
