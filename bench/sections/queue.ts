import fs from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import type { Job } from '../../src/model/job.js';
import { cancel, jobSpec, submit } from '../lib/client.js';
import { BENCH_TOKEN, type GantryProc, startGantry } from '../lib/gantry.js';
import { median, now, percentile, pool, round, say, within } from '../lib/util.js';

export interface QueueBenchConfig {
  /** Jobs queued behind the one holding the only GPU. */
  depth: number;
  /** Submits made at once. */
  concurrency: number;
  /** Submits whose latency is the shallow (empty-queue) figure, and the deep one: the first and the last this many. */
  sample: number;
  /** Freed-GPU hand-overs timed at depth. */
  handovers: number;
}

export interface QueueBenchResult {
  label: string;
  depth: number;
  submitShallowMs: { p50: number; p99: number };
  submitDeepMs: { p50: number; p99: number };
  submitAllSeconds: number;
  /** A GPU job's end event → the next one's first step event, as a client sees them (ms). */
  handoverMs: number[];
  /** Scheduling passes during the hand-overs, at depth (from gantry_scheduler_pass_seconds; null for a build without it). */
  passes: { count: number; meanMs: number; p99AtMostMs: number } | null;
}

const GPU = 'GPU-9a1e0000-0000-4000-8000-00000000b1e0:81920';
const AWAIT_GATE = 'while [ ! -e /gate/open ]; do sleep 0.05; done';

/**
 * One GPU, one job holding it, `depth` one-GPU jobs queued behind it: the
 * latency of a submit into a short queue and into a deep one, then how soon
 * a freed GPU goes to the next job at that depth (each job is `true`, so
 * each end frees the card for the next).
 */
export async function benchQueue(dir: string, cfg: QueueBenchConfig, label: string, dist?: string): Promise<QueueBenchResult> {
  const gate = path.join(dir, 'gate');
  fs.mkdirSync(gate, { recursive: true, mode: 0o755 });
  fs.chmodSync(gate, 0o755);
  const g = await startGantry(
    path.join(dir, 'data'),
    { GANTRY_GPUS: GPU, GANTRY_GPU_DRIVER: 'env', GANTRY_MOUNT_ALLOWLIST: gate, GANTRY_PULL_POLICY: 'never', GANTRY_METRICS: 'open' },
    label,
    dist,
  );
  try {
    const gpuJob = (command: string[], extra: Record<string, unknown> = {}) => ({
      ...jobSpec(command),
      gpus: { count: 1 },
      timeoutSeconds: 3600,
      ...extra,
    });
    const holder = await submit(g.url, BENCH_TOKEN, gpuJob(['sh', '-c', AWAIT_GATE], { mounts: [{ source: gate, target: '/gate' }] }));
    await untilState(g, holder.id, (j) => j.state === 'running', 60_000);

    // Warm-up, so that the shallow figure is not the JIT's: jobs submitted and cancelled, leaving the queue empty.
    const warm = await Promise.all(Array.from({ length: cfg.sample }, () => submit(g.url, BENCH_TOKEN, gpuJob(['true']))));
    for (const j of warm) await cancel(g.url, BENCH_TOKEN, j.id);
    say(`queue (${label}): submitting ${cfg.depth} one-GPU jobs behind the held GPU, ${cfg.concurrency} at a time`);
    const t0 = now();
    const latencies: number[] = new Array(cfg.depth);
    const ids: string[] = new Array(cfg.depth);
    await pool(cfg.depth, cfg.concurrency, async (i) => {
      const t = now();
      const job = await submit(g.url, BENCH_TOKEN, gpuJob(['true']));
      latencies[i] = now() - t;
      ids[i] = job.id;
    });
    const submitAllSeconds = (now() - t0) / 1000;
    const stats = (xs: number[]) => ({ p50: round(median(xs), 2), p99: round(percentile(xs, 99), 2) });

    // The queue is in submit order (one priority): the head is the oldest.
    // Every job timed is followed from before the gate opens, so no event
    // is missed and each is timed as it arrives.
    const chain = [holder.id, ...ids.slice(0, cfg.handovers)];
    const watched = await Promise.all(chain.map((id) => watch(g, id)));
    const passesBefore = await passHistogram(g);
    fs.writeFileSync(path.join(gate, 'open'), '');
    const handoverMs: number[] = [];
    for (let k = 1; k < watched.length; k++) {
      const [ended, started] = await within(Promise.all([watched[k - 1]!.ended, watched[k]!.started]), 120_000, `hand-over ${k}`);
      handoverMs.push(round(started - ended, 2));
    }
    const passesAfter = await passHistogram(g);
    return {
      label,
      depth: cfg.depth,
      submitShallowMs: stats(latencies.slice(0, cfg.sample)),
      submitDeepMs: stats(latencies.slice(-cfg.sample)),
      submitAllSeconds: round(submitAllSeconds, 1),
      handoverMs,
      passes: passesBefore && passesAfter ? passStats(passesBefore, passesAfter) : null,
    };
  } finally {
    await g.stop();
  }
}

async function untilState(g: GantryProc, id: string, pred: (j: Job) => boolean, ms: number): Promise<Job> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await request(`${g.url}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${BENCH_TOKEN}` } });
    const job = (await r.body.json()) as Job;
    if (pred(job)) return job;
    if (Date.now() > deadline) throw new Error(`job ${id} is still ${job.state}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/**
 * Follows a job's SSE stream until its end: when this client received the
 * first status event of the job out of the queue, and the end event.
 */
async function watch(g: GantryProc, id: string): Promise<{ started: Promise<number>; ended: Promise<number> }> {
  const stream = await request(`${g.url}/v1/jobs/${id}/logs`, {
    headers: { authorization: `Bearer ${BENCH_TOKEN}`, accept: 'text/event-stream' },
  });
  let onStarted!: (t: number) => void;
  let onEnded!: (t: number) => void;
  const started = new Promise<number>((resolve) => (onStarted = resolve));
  const ended = new Promise<number>((resolve, reject) => {
    onEnded = resolve;
    void (async () => {
      let buf = '';
      for await (const chunk of stream.body) {
        const t = now();
        buf += chunk.toString();
        for (let end = buf.indexOf('\n\n'); end !== -1; end = buf.indexOf('\n\n')) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const name = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (data === undefined) continue;
          if (name === 'status' && (JSON.parse(data) as Job).state !== 'queued') onStarted(t);
          if (name === 'end') {
            onStarted(t);
            onEnded(t);
          }
        }
      }
      reject(new Error(`the stream of job ${id} ended without an end event`));
    })().catch(reject);
  });
  ended.catch(() => undefined);
  return { started, ended };
}

interface PassHistogram {
  sum: number;
  count: number;
  /** Cumulative counts by upper bound (seconds). */
  buckets: Map<number, number>;
}

/** gantry_scheduler_pass_seconds from the open metrics listener; null when the build has no such metric. */
async function passHistogram(g: GantryProc): Promise<PassHistogram | null> {
  const r = await request(`http://127.0.0.1:${g.env.GANTRY_METRICS_PORT}/metrics`);
  const text = await r.body.text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
  const count = value('gantry_scheduler_pass_seconds_count');
  if (Number.isNaN(count)) return null;
  const buckets = new Map<number, number>();
  for (const m of text.matchAll(/^gantry_scheduler_pass_seconds_bucket\{le="([^"]+)"\} (\S+)$/gm)) {
    if (m[1] !== '+Inf') buckets.set(Number(m[1]), Number(m[2]));
  }
  return { sum: value('gantry_scheduler_pass_seconds_sum'), count, buckets };
}

function passStats(before: PassHistogram, after: PassHistogram): { count: number; meanMs: number; p99AtMostMs: number } {
  const count = after.count - before.count;
  const within = [...after.buckets].map(([le, n]) => [le, n - (before.buckets.get(le) ?? 0)] as const).sort((a, b) => a[0] - b[0]);
  const p99 = within.find(([, n]) => n >= 0.99 * count)?.[0] ?? Number.POSITIVE_INFINITY;
  return { count, meanMs: round(((after.sum - before.sum) / Math.max(count, 1)) * 1000, 3), p99AtMostMs: p99 * 1000 };
}
