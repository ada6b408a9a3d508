import { z } from 'zod';

/**
 * What the audit trail records, as stable codes: one per kind of
 * state-changing request, and `config.reload` for a reload the process was
 * asked for without HTTP (SIGHUP). A code is never renamed or reused; new
 * actions get new codes.
 */
export const AUDIT_ACTIONS = [
  'job.submit',
  'job.cancel',
  'node.drain',
  'node.undrain',
  'gpu.drain',
  'gpu.undrain',
  'gpu.smoke',
  'config.reload',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/**
 * `ok`: done (a 2xx answer). `refused`: turned down, nothing changed (4xx:
 * authentication, scope, validation, policy, no such job or node).
 * `failed`: could not be done (5xx, such as a store that cannot be written;
 * or a reload that did not take).
 */
export const AUDIT_OUTCOMES = ['ok', 'refused', 'failed'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

/**
 * The little a record says beyond who, what and how it ended. Never request
 * content: a job spec may carry secrets in its env, so a refusal names the
 * fields at fault and never their values.
 */
export const AuditDetailSchema = z
  .object({
    fields: z.array(z.string()).optional().describe('The request fields a refusal named, as paths (`body.image`); never their values.'),
    signal: z.string().optional().describe('The signal that asked for a reload (`SIGHUP`).'),
    error: z.string().optional().describe('Why a reload did not take.'),
  })
  .meta({ id: 'AuditDetail' });
export type AuditDetail = z.infer<typeof AuditDetailSchema>;

export const AuditRecordSchema = z
  .object({
    seq: z.number().int().describe('The record’s number: unique, and increasing in the order records were written (the list’s cursor).'),
    at: z.string().describe('When it was recorded (ISO 8601, UTC): the store’s clock, which in a fleet is PostgreSQL’s.'),
    node: z.string().describe('The Gantry node that answered (GANTRY_NODE_NAME).'),
    actor: z
      .string()
      .nullable()
      .describe(
        'The owner of the presented token when it was valid (a 403 included); null without one, or for an action not asked over HTTP.',
      ),
    // A string rather than an enum: a newer node of the fleet may write a code
    // this one does not know, and listing it must not fail.
    action: z.string().describe(`A stable code: ${AUDIT_ACTIONS.map((a) => `\`${a}\``).join(', ')}.`),
    target: z
      .string()
      .nullable()
      .describe(
        'What was acted on: the job id (the one a submit created), the node name, or the GPU UUID; null if none. As the request named it, with control and other unprintable characters escaped (`\\u0000`) and a backslash doubled.',
      ),
    outcome: z.enum(AUDIT_OUTCOMES),
    status: z.number().int().nullable().describe('The HTTP status of the answer; null for an action not asked over HTTP.'),
    problemType: z.string().nullable().describe('The RFC 9457 problem `type` of the answer when refused or failed over HTTP.'),
    requestId: z
      .string()
      .nullable()
      .describe(
        'The request’s id, Gantry’s own (a UUID), as its answer carried it in `X-Request-Id`; null for an action not asked over HTTP.',
      ),
    clientRequestId: z
      .string()
      .nullable()
      .describe(
        'The `X-Request-Id` the client sent, when it was a plain token (letters, digits, `.`, `_`, `-`; at most 128): its claim, for joining its own logs; never unique.',
      ),
    detail: AuditDetailSchema,
  })
  .meta({ id: 'AuditRecord' });
export type AuditRecord = z.infer<typeof AuditRecordSchema>;

/** A record to append: the store numbers and times it. */
export type NewAuditRecord = Omit<AuditRecord, 'seq' | 'at' | 'action'> & { action: AuditAction };

export const AuditListSchema = z
  .object({
    items: z.array(AuditRecordSchema),
    nextCursor: z.string().nullable().describe('Pass as `cursor` for the next (older) page; null on the last page.'),
  })
  .meta({ id: 'AuditList' });

/** GET /v1/audit's filters: every one given must hold. */
export const AuditQuerySchema = z
  .object({
    actor: z.string().min(1).max(128).optional().describe('Only records of this token owner.'),
    action: z.enum(AUDIT_ACTIONS).optional().describe('Only records of this action.'),
    target: z.string().min(1).max(253).optional().describe('Only records about this job id, node name or GPU UUID.'),
    outcome: z.enum(AUDIT_OUTCOMES).optional().describe('Only records that ended so.'),
    from: z.iso.datetime({ offset: true }).optional().describe('Only records at or after this time (RFC 3339).'),
    to: z.iso.datetime({ offset: true }).optional().describe('Only records before this time (RFC 3339).'),
    limit: z.coerce.number().int().min(1).max(500).default(50).describe('The most records a page holds.'),
    cursor: z
      .string()
      .regex(/^\d+$/, 'must be a cursor returned by a previous page')
      .optional()
      .describe('The previous page’s `nextCursor`.'),
  })
  .strict()
  .refine((q) => q.from === undefined || q.to === undefined || Date.parse(q.from) < Date.parse(q.to), {
    message: 'must be later than from',
    path: ['to'],
  });
export type AuditQuery = z.infer<typeof AuditQuerySchema>;
