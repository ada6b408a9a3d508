// A job's live log over SSE, with its GPU samples as they are taken.
import { ApiError, authHeaders, tokenRefused } from './api.js';
import { sseBatches } from './sse.js';
import { sleep } from './timing.js';

const LOG_TAIL = 5000; // lines fetched when a job page opens

/**
 * Follows a job's log until its `end` event, reconnecting after a dropped
 * connection with Last-Event-ID so no line is lost or repeated. Reports
 * through `on.connection(state)`, `on.lines(batch)`, `on.status(job)` and
 * `on.telemetry(sample)` (GPU samples carry no id: none is replayed).
 */
export async function followLog(jobId, signal, on) {
  let lastSeq = null;
  let retryMs = 1000;
  let delay = retryMs;
  let attempt = 0;
  while (!signal.aborted) {
    on.connection(attempt === 0 ? 'connecting' : 'reconnecting');
    attempt++;
    const headers = authHeaders({ Accept: 'text/event-stream' });
    if (lastSeq !== null) headers['Last-Event-ID'] = String(lastSeq);
    const url = `/v1/jobs/${encodeURIComponent(jobId)}/logs?${lastSeq === null ? `tail=${LOG_TAIL}&` : ''}telemetry=true`;
    try {
      const res = await fetch(url, { headers, signal, cache: 'no-store' });
      if (res.status === 401) return tokenRefused();
      if (!res.ok) {
        const problem = (res.headers.get('content-type') ?? '').includes('json') ? await res.json() : null;
        throw new ApiError(res.status, problem);
      }
      on.connection('live');
      delay = retryMs;
      for await (const events of sseBatches(res.body)) {
        const lines = [];
        for (const ev of events) {
          if (ev.retry !== null) retryMs = ev.retry;
          if (ev.event === 'log') {
            const l = JSON.parse(ev.data);
            lastSeq = l.seq;
            lines.push(l);
          } else if (ev.event === 'status') {
            if (lines.length) on.lines(lines.splice(0));
            on.status(JSON.parse(ev.data));
          } else if (ev.event === 'telemetry') {
            on.telemetry(JSON.parse(ev.data));
          } else if (ev.event === 'end') {
            if (lines.length) on.lines(lines.splice(0));
            on.status(JSON.parse(ev.data));
            on.connection('ended');
            return;
          }
        }
        if (lines.length) on.lines(lines);
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status === 404) {
        on.connection('gone');
        return;
      }
    }
    if (signal.aborted) return;
    on.connection('reconnecting');
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 15000);
  }
}
