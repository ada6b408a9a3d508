/**
 * The campaign's job stream: specs drawn from the seed, submitted through a
 * random node with an Idempotency-Key (a submit whose reply is lost is sent
 * again, through another node, until one answers), and cancels sent at a
 * random moment through a random node. Every answer is recorded for the
 * invariant checker.
 */
import { request } from 'undici';
import type { Job } from '../../src/model/job.js';
import type { Fleet } from '../helpers/fleet.js';
import { ADMIN_TOKEN, TEST_IMAGE } from '../helpers/gantry.js';

/** No request of the campaign waits longer than this: a paused or cut-off node answers nothing. */
const REQUEST_TIMEOUT_MS = 5_000;

export interface Answer<T> {
  status: number;
  body: T;
  text: string;
}

/** One request to a node; null when it timed out or the connection failed (the reply was lost). */
export async function callNode<T>(url: string, method: 'GET' | 'POST', path: string, body?: unknown, headers: Record<string, string> = {}) {
  try {
    const res = await request(url + path, {
      method,
      headers: {
        authorization: `Bearer ${ADMIN_TOKEN}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await res.body.text();
    const json = String(res.headers['content-type'] ?? '').includes('json') && text;
    return { status: res.statusCode, body: (json ? JSON.parse(text) : text) as T, text } satisfies Answer<T>;
  } catch {
    return null;
  }
}

/** What a job is asked to do, as drawn from the seed. */
export interface PlannedJob {
  /** Its place in the stream, also its Idempotency-Key's tail. */
  index: number;
  /** Lines it prints, `line-1` … `line-N`, one every `pace` seconds. */
  lines: number;
  /** Exit code: 0, a failure on every attempt, or a failure on the first attempt only ('first'). */
  exit: 0 | 3 | 'first';
  retry: boolean;
  preemptible: boolean;
  gpu: boolean;
  priority: number;
  /** Milliseconds after its submit at which a cancel is sent; null for none. */
  cancelAfterMs: number | null;
}

/** A job as the campaign saw it. */
export interface TrackedJob {
  plan: PlannedJob;
  id: string;
  /** Each cancel that a node answered 202, with the job's state in that answer. */
  cancels: { status: number; stateInAnswer: Job['state']; at: number }[];
  /** The first terminal view seen, to catch a job that ends twice (or leaves its end). */
  firstEnd: { state: Job['state']; finishedAt: string | null; attempt: number } | null;
  /** Set by the checker's poll when a later view contradicts firstEnd. */
  endChanged: string | null;
  /** The last view the checker's poll read. */
  last: Job | null;
}

export const PACE_SECONDS = 0.25;

export function planJob(index: number, rng: () => number): PlannedJob {
  const exitRoll = rng();
  return {
    index,
    lines: 4 + Math.floor(rng() * 12),
    exit: exitRoll < 0.65 ? 0 : exitRoll < 0.85 ? 'first' : 3,
    retry: rng() < 0.5,
    gpu: rng() < 0.35,
    preemptible: rng() < 0.3,
    priority: rng() < 0.2 ? 5 : 0,
    cancelAfterMs: rng() < 0.2 ? Math.floor(rng() * 6000) : null,
  };
}

/** Where, under the host folder mounted at /ticks, each attempt of the job writes the host's uptime as it prints a line. */
export const tickFile = (p: PlannedJob, attempt: number | string) => `j${p.index}-a${attempt}`;

/**
 * The job's spec: it prints its lines, each with a tick (the host's uptime,
 * which every container reads alike) in a file of its attempt, so that the
 * checker sees when each attempt really ran, whatever Gantry recorded.
 */
export function specOf(p: PlannedJob, tickDir: string): Record<string, unknown> {
  const exit = p.exit === 'first' ? '$([ "$GANTRY_ATTEMPT" = 1 ] && echo 3 || echo 0)' : String(p.exit);
  const tick = `cut -d" " -f1 /proc/uptime >> /ticks/${tickFile(p, '$GANTRY_ATTEMPT')}`;
  return {
    image: TEST_IMAGE,
    name: `chaos-${p.index}`,
    command: ['sh', '-c', `for i in $(seq 1 ${p.lines}); do echo line-$i; ${tick}; sleep ${PACE_SECONDS}; done; exit ${exit}`],
    mounts: [{ source: tickDir, target: '/ticks', readOnly: false }],
    timeoutSeconds: 120,
    ...(p.retry ? { retry: { maxAttempts: 3, on: ['node_lost', 'exit_code'] } } : {}),
    ...(p.preemptible ? { preemptible: true } : {}),
    ...(p.gpu ? { gpus: { count: 1 } } : {}),
    ...(p.priority ? { priority: p.priority } : {}),
  };
}

/** The node URLs now (a node's Gantry gets a new process, on the same port, when a fault kills it). */
export const urls = (fleet: Fleet) => fleet.nodes.map((n) => n.gantry.url);

const pick = <T>(xs: T[], rng: () => number): T => xs[Math.floor(rng() * xs.length)]!;

/**
 * Submits until a node answers 201 or 200 (a replay of the same key), each
 * try through a random node, giving up at `deadline`; null when none did.
 */
export async function submit(fleet: Fleet, spec: Record<string, unknown>, key: string, rng: () => number, deadline: number) {
  while (Date.now() < deadline) {
    const r = await callNode<Job>(pick(urls(fleet), rng), 'POST', '/v1/jobs', spec, { 'idempotency-key': key });
    if (r && (r.status === 201 || r.status === 200)) return r.body.id;
    if (r && r.status < 500 && r.status !== 429) throw new Error(`submit with key ${key} refused: ${r.status} ${r.text}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return null;
}

/** One cancel through a random node; recorded only when a node answered it (a lost reply promises nothing). */
export async function cancel(fleet: Fleet, job: TrackedJob, rng: () => number): Promise<void> {
  const r = await callNode<Job>(pick(urls(fleet), rng), 'POST', `/v1/jobs/${job.id}/cancel`);
  if (r && (r.status === 202 || r.status === 200)) job.cancels.push({ status: r.status, stateInAnswer: r.body.state, at: Date.now() });
}
