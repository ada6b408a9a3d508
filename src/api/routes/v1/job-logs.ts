import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { attemptViews } from '../../../jobs/view.js';
import { attemptLogBounds, followLog } from '../../../logs/follow.js';
import { NotFoundError } from '../../../model/errors.js';
import { type GpuSample, GpuSampleSchema, type GpuWarning, GpuWarningSchema } from '../../../model/gpu-telemetry.js';
import { type Job, JobSchema } from '../../../model/job.js';
import { type LogLine, LogLineSchema } from '../../../model/log.js';
import type { JobRecord } from '../../../store/store.js';
import { examples } from '../../examples.js';
import { errorResponses, type RouteDeps } from '../common.js';

/**
 * The most lines `tail` may ask for: its start is found from the log's end,
 * by arithmetic without a stream filter and by reading back at most this many
 * lines with one, so one request costs the same however long the log is.
 */
const MAX_TAIL_LINES = 10_000;

const LogsQuery = z
  .object({
    stream: z.enum(['stdout', 'stderr']).optional().describe('Only this stream.'),
    tail: z.coerce
      .number()
      .int()
      .min(0)
      .max(MAX_TAIL_LINES)
      .optional()
      .describe(`Only the last N lines (then follow, if asked); at most ${MAX_TAIL_LINES} (read the rest with \`since\`).`),
    since: z.coerce.number().int().min(0).optional().describe('Only lines with a sequence number greater than this.'),
    attempt: z.coerce
      .number()
      .int()
      .min(1)
      .max(1000)
      .optional()
      .describe(
        "Only this attempt's lines (the job's `attempts` say where each one's are); every attempt's by default. " +
          'The log ends with the attempt: following one that is retried stops at its last line. ' +
          'With `tail`, an attempt that has ended gives its last N records of any stream, before the `stream` filter.',
      ),
    follow: z.enum(['true', 'false', '1', '0']).optional().describe('Keep the response open until the job ends. SSE always follows.'),
    telemetry: z
      .enum(['true', 'false', '1', '0'])
      .optional()
      .describe(
        "SSE only: also send the job's GPU samples (`event: telemetry`) and warnings (`event: gpu-warning`) as the node running it takes them.",
      ),
    lastEventId: z.coerce
      .number()
      .int()
      .min(0)
      .optional()
      .describe('Same as the Last-Event-ID header, for clients that cannot set headers.'),
  })
  .strict();

const SSE_DOC = `Server-Sent Events (with \`Accept: text/event-stream\`):
- \`event: log\`, \`id: <seq>\`, \`data:\` a LogLine as JSON ({seq, stream, time, line}).
- \`event: status\`, \`data:\` the Job as JSON, first on connect and then on each change.
- \`event: telemetry\` (with \`?telemetry=true\`), \`data:\` a GpuSample as JSON: the job's cards at the sample and its summary so far, every GANTRY_GPU_SAMPLE_SECONDS while it runs (only from the node that runs it; a slow client gets the latest).
- \`event: gpu-warning\` (with \`?telemetry=true\`), \`data:\` a GpuWarning as JSON (idle, or memory over what a sharing job declared).
- \`event: end\`, \`data:\` the final Job as JSON; then the stream closes.
- \`: ping\` comment lines at least every 15 s.
Resume with \`Last-Event-ID\` (or \`?lastEventId=\`): delivery restarts right after that sequence number. Telemetry and warning events carry no \`id\`, so they never move where a resume starts, and are not replayed.`;

// The SSE events, for the document: one schema per event as an SSE parser
// hands it over. `data` is JSON text; contentSchema names what it decodes to.
const componentRef = (schema: z.ZodType) => ({ $ref: `#/components/schemas/${z.globalRegistry.get(schema)!.id}` });
const jsonText = (schema: z.ZodType, what: string) =>
  z.string().meta({ description: `${what}, as JSON text.`, contentMediaType: 'application/json', contentSchema: componentRef(schema) });
const retry = z.number().int().optional().describe('Reconnection delay in ms; sent once, with the first event.');
const LogEventSchema = z
  .object({
    event: z.literal('log'),
    id: z.string().regex(/^\d+$/).describe("The line's `seq`; send it back as `Last-Event-ID` to resume after it."),
    data: jsonText(LogLineSchema, 'A LogLine'),
    retry,
  })
  .meta({ id: 'LogEvent', description: 'One line of output.', example: { event: 'log', id: '2', data: JSON.stringify(examples.logLine) } });
const StatusEventSchema = z
  .object({ event: z.literal('status'), data: jsonText(JobSchema, 'The Job'), retry })
  .meta({ id: 'StatusEvent', description: 'The job, sent first on connect and again on each change of state.' });
const EndEventSchema = z
  .object({ event: z.literal('end'), data: jsonText(JobSchema, 'The Job in its final state'), retry })
  .meta({ id: 'EndEvent', description: 'The job in its final state; the server then closes the stream.' });
const TelemetryEventSchema = z
  .object({ event: z.literal('telemetry'), data: jsonText(GpuSampleSchema, 'A GpuSample'), retry })
  .meta({ id: 'TelemetryEvent', description: "A sample of the job's GPUs (with `?telemetry=true`); no `id`." });
const GpuWarningEventSchema = z
  .object({ event: z.literal('gpu-warning'), data: jsonText(GpuWarningSchema, 'A GpuWarning'), retry })
  .meta({ id: 'GpuWarningEvent', description: 'A warning of the GPU sampler about the job (with `?telemetry=true`); no `id`.' });
const LogStreamEventSchema = z
  .discriminatedUnion('event', [LogEventSchema, StatusEventSchema, TelemetryEventSchema, GpuWarningEventSchema, EndEventSchema])
  .meta({
    id: 'LogStreamEvent',
    discriminator: {
      propertyName: 'event',
      mapping: {
        log: componentRef(LogEventSchema).$ref,
        status: componentRef(StatusEventSchema).$ref,
        telemetry: componentRef(TelemetryEventSchema).$ref,
        'gpu-warning': componentRef(GpuWarningEventSchema).$ref,
        end: componentRef(EndEventSchema).$ref,
      },
    },
    description:
      'One event of the `text/event-stream` log (OpenAPI 3.1: the schema describes each event). `event:` names the type, `data:` carries JSON text, `id:` is set on `log` events. ' +
      'Comment lines (`: ping`) keep the connection alive at least every 15 s and carry no event.',
  });

/** Characters JSON.stringify would escape in a string (and lone surrogates). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what JSON must escape
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;
export const sse = {
  // The same bytes as JSON.stringify(l) for a LogLine ({seq, stream, time,
  // line}; stream and time never need escaping), without its cost per line
  // (docs/performance.md).
  line: (l: LogLine) =>
    `id: ${l.seq}\nevent: log\ndata: {"seq":${l.seq},"stream":"${l.stream}","time":"${l.time}","line":${NEEDS_ESCAPE.test(l.line) ? JSON.stringify(l.line) : `"${l.line}"`}}\n\n`,
  status: (job: Job) => `event: status\ndata: ${JSON.stringify(job)}\n\n`,
  telemetry: (sample: GpuSample) => `event: telemetry\ndata: ${JSON.stringify(sample)}\n\n`,
  gpuWarning: (warning: GpuWarning) => `event: gpu-warning\ndata: ${JSON.stringify(warning)}\n\n`,
  end: (job: Job) => `event: end\ndata: ${JSON.stringify(job)}\n\n`,
  heartbeat: ': ping\n\n',
};
const plain = { line: (l: LogLine) => `${l.line}\n` };

/** /v1/jobs/{id}/logs: stored output as text, or live as Server-Sent Events. */
export const jobLogRoutes: FastifyPluginAsyncZod<RouteDeps> = async (app, { jobs, logs, events, metrics, config }) => {
  app.get(
    '/v1/jobs/:id/logs',
    {
      onRequest: app.auth('read'),
      schema: {
        operationId: 'getJobLogs',
        summary: "A job's output, as text or live Server-Sent Events",
        description: `Lines are stored by Gantry and outlive the container and restarts.\n\nText (default): one line per line of output.\n\n${SSE_DOC}`,
        tags: ['logs'],
        security: [{ bearer: [] }],
        params: z.object({ id: z.string().min(1).max(64).describe('Job id') }),
        querystring: LogsQuery,
        headers: z.object({ 'last-event-id': z.string().regex(/^\d+$/).optional() }),
        response: {
          200: {
            description: 'The log',
            content: {
              'text/plain': { schema: z.string().describe('One output line per line.'), example: examples.logText },
              'text/event-stream': {
                schema: LogStreamEventSchema,
                example: { event: 'log', id: '2', data: JSON.stringify(examples.logLine) },
              },
            },
          },
          ...errorResponses(400, 401, 403, 404, 414, 422),
        },
      },
    },
    async (request, reply) => {
      const principal = request.principal;
      const job = await jobs.visibleRecord(principal, request.params.id);
      const q = request.query;
      const wantsSse = (request.headers.accept ?? '').includes('text/event-stream');
      const lastEventId = request.headers['last-event-id'] !== undefined ? Number(request.headers['last-event-id']) : q.lastEventId;
      const range = q.attempt === undefined ? null : attemptRange(job, q.attempt);
      let afterSeq = lastEventId ?? q.since ?? 0;
      if (q.tail !== undefined && lastEventId === undefined) {
        if (range?.untilSeq != null) afterSeq = Math.max(range.afterSeq, range.untilSeq - q.tail);
        else {
          const last = (await logs.state(job.id)).nextSeq - 1;
          // Every record has the next sequence number: without a filter, the last N start N before the end.
          const tail = q.stream === undefined ? [] : await logs.tail(job.id, q.tail, q.stream);
          afterSeq = q.stream === undefined ? Math.max(0, last - q.tail) : tail.length > 0 ? tail[0]!.seq - 1 : last;
        }
        if (q.since !== undefined) afterSeq = Math.max(afterSeq, q.since);
      }
      if (range) afterSeq = Math.max(afterSeq, range.afterSeq);
      const follow = wantsSse || q.follow === 'true' || q.follow === '1';

      reply.hijack();
      const res = reply.raw;
      if (wantsSse) {
        request.isSse = true;
        metrics.trackSse(res);
      }
      res.writeHead(200, {
        'Content-Type': wantsSse ? 'text/event-stream; charset=utf-8' : 'text/plain; charset=utf-8',
        'Cache-Control': 'no-cache',
        'X-Accel-Buffering': 'no',
        'X-Request-Id': request.id,
        ...(wantsSse || follow ? { Connection: 'keep-alive' } : {}),
      });
      const currentJob = () => jobs.current(job.id);
      if (wantsSse) res.write(`retry: 2000\n${sse.status(await currentJob())}`);
      await followLog({
        jobId: job.id,
        afterSeq,
        stream: q.stream,
        follow,
        heartbeatMs: config.logs.heartbeatSeconds * 1000,
        stallMs: config.logs.stallSeconds * 1000,
        store: logs,
        hub: events,
        currentJob,
        attempt: q.attempt,
        telemetry: wantsSse && (q.telemetry === 'true' || q.telemetry === '1'),
        res,
        format: wantsSse ? sse : plain,
      });
    },
  );
};

/** Where attempt n's lines are; NotFoundError for an attempt the job has not had. */
function attemptRange(job: JobRecord, n: number): ReturnType<typeof attemptLogBounds> {
  const attempts = attemptViews(job.attempts);
  if (n !== job.attempt && !attempts.some((a) => a.attempt === n)) throw new NotFoundError(`attempt ${n} of job ${job.id}`);
  return attemptLogBounds(attempts, n);
}
