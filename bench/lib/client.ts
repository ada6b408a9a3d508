import http from 'node:http';
import { Agent, request } from 'undici';
import type { Job } from '../../src/model/job.js';
import { BENCH_LABEL, BENCH_LABEL_VALUE } from './docker.js';
import { IMAGE } from './gantry.js';
import { now } from './util.js';

const agent = new Agent({ connections: 64, keepAliveTimeout: 30_000 });

export function jobSpec(command: string[]): Record<string, unknown> {
  return { image: IMAGE, command, labels: { [BENCH_LABEL]: BENCH_LABEL_VALUE } };
}

export async function submit(url: string, token: string, spec: Record<string, unknown>): Promise<Job> {
  const r = await request(`${url}/v1/jobs`, {
    method: 'POST',
    dispatcher: agent,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(spec),
  });
  const text = await r.body.text();
  if (r.statusCode !== 201) throw new Error(`submit: ${r.statusCode} ${text}`);
  return JSON.parse(text) as Job;
}

export async function getJob(url: string, token: string, id: string): Promise<Job> {
  const r = await request(`${url}/v1/jobs/${id}`, { dispatcher: agent, headers: { authorization: `Bearer ${token}` } });
  const text = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`get job: ${r.statusCode} ${text}`);
  return JSON.parse(text) as Job;
}

export async function cancel(url: string, token: string, id: string): Promise<void> {
  const r = await request(`${url}/v1/jobs/${id}/cancel`, {
    method: 'POST',
    dispatcher: agent,
    headers: { authorization: `Bearer ${token}` },
  });
  await r.body.text();
}

export interface SseResult {
  status: number;
  wireBytes: number;
  /** Times (performance.now()) of the request, first byte, first `event: log`, and the close after `end`. */
  tRequest: number;
  tFirstByte: number | null;
  tFirstLog: number | null;
  tEnd: number | null;
  /** seq of the last log event (= log events received, when following from the start). */
  lastSeq: number;
  /** The job from the `end` event, if one came. */
  end: Job | null;
}

export interface SseHandle {
  /** Resolves once the first bytes (the `status` event) arrived. */
  connected: Promise<void>;
  done: Promise<SseResult>;
  close(): void;
}

const LOG_MARK = Buffer.from('event: log\n');
const END_MARK = 'event: end\ndata: ';
const sseAgent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

/**
 * A light SSE follower: counts bytes, notes when the first log event and the
 * end arrive, and parses only the tail (last log id and the `end` job), so
 * that the client costs little CPU next to the server it measures.
 */
export function followSse(url: string, token: string, jobId: string): SseHandle {
  const r: SseResult = { status: 0, wireBytes: 0, tRequest: now(), tFirstByte: null, tFirstLog: null, tEnd: null, lastSeq: 0, end: null };
  let tail: Buffer[] = [];
  let tailBytes = 0;
  let markCarry: Buffer | null = null;
  let onConnected!: () => void;
  let onConnectError!: (e: Error) => void;
  const connected = new Promise<void>((res, rej) => {
    onConnected = res;
    onConnectError = rej;
  });
  connected.catch(() => undefined);
  let req: http.ClientRequest;
  const done = new Promise<SseResult>((resolve, reject) => {
    const u = new URL(`${url}/v1/jobs/${jobId}/logs`);
    req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        agent: sseAgent,
        headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
      },
      (res) => {
        r.status = res.statusCode ?? 0;
        res.on('data', (chunk: Buffer) => {
          const t = now();
          if (r.tFirstByte === null) {
            r.tFirstByte = t;
            onConnected();
          }
          r.wireBytes += chunk.length;
          if (r.tFirstLog === null) {
            const hay = markCarry ? Buffer.concat([markCarry, chunk]) : chunk;
            if (hay.indexOf(LOG_MARK) !== -1) r.tFirstLog = t;
            else markCarry = hay.subarray(Math.max(0, hay.length - LOG_MARK.length));
          }
          tail.push(chunk);
          tailBytes += chunk.length;
          while (tail.length > 1 && tailBytes - tail[0]!.length >= 65536) tailBytes -= tail.shift()!.length;
        });
        res.on('end', () => {
          r.tEnd = now();
          const text = Buffer.concat(tail).toString('utf8');
          tail = [];
          const e = text.lastIndexOf(END_MARK);
          if (e !== -1) {
            const stop = text.indexOf('\n\n', e);
            r.end = JSON.parse(text.slice(e + END_MARK.length, stop === -1 ? undefined : stop)) as Job;
          }
          const before = e === -1 ? text : text.slice(0, e);
          const idAt = before.lastIndexOf('id: ');
          if (idAt !== -1) r.lastSeq = Number.parseInt(before.slice(idAt + 4, before.indexOf('\n', idAt)), 10);
          resolve(r);
        });
        res.on('error', reject);
      },
    );
    req.on('error', (e) => {
      onConnectError(e);
      reject(e);
    });
    req.end();
  });
  // A client closed on purpose (close()) rejects `done`; nobody need await it then.
  done.catch(() => undefined);
  return { connected, done, close: () => req.destroy() };
}
