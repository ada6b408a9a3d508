import { Pool } from 'undici';
import { percentile, sleep } from './util.js';

export interface OpenLoopResult {
  sent: number;
  reqPerS: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: number;
  non2xx: number;
}

/**
 * An open-loop load at a fixed rate: request i is due at start + i / rate
 * whether or not earlier ones have been answered, and its latency counts
 * from that due time, so a server that stalls shows the whole stall in the
 * percentiles (no coordinated omission). autocannon's own rate limit lets
 * each connection send its whole second's quota at once, which measures
 * those bursts instead of the server.
 */
export async function openLoop(o: {
  url: string;
  paths: string[];
  headers: Record<string, string>;
  rate: number;
  seconds: number;
  connections: number;
}): Promise<OpenLoopResult> {
  const pool = new Pool(o.url, { connections: o.connections, pipelining: 1 });
  const total = Math.round(o.rate * o.seconds);
  const latencies = new Float64Array(total);
  let sent = 0;
  let done = 0;
  let errors = 0;
  let non2xx = 0;
  const start = performance.now();
  const inFlight: Promise<void>[] = [];
  const fire = (i: number) => {
    const due = start + (i * 1000) / o.rate;
    return pool
      .request({ method: 'GET', path: o.paths[i % o.paths.length]!, headers: o.headers })
      .then(async (res) => {
        await res.body.dump();
        if (res.statusCode < 200 || res.statusCode >= 300) non2xx += 1;
      })
      .catch(() => {
        errors += 1;
      })
      .finally(() => {
        latencies[i] = performance.now() - due;
        done += 1;
      });
  };
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) * o.rate) / 1000) + 1);
    while (sent < due) inFlight.push(fire(sent++));
    await sleep(1);
  }
  await Promise.all(inFlight);
  const elapsed = (performance.now() - start) / 1000;
  await pool.close();
  const xs = Array.from(latencies);
  return {
    sent: done,
    reqPerS: done / elapsed,
    p50Ms: percentile(xs, 50),
    p99Ms: percentile(xs, 99),
    maxMs: Math.max(...xs),
    errors,
    non2xx,
  };
}
