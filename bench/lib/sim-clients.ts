/**
 * The clients of the simulated fleet: a steady stream of jobs submitted and
 * polled through the nodes' HTTP API (as Airflow's operator and sensor
 * would) and every node's /metrics scraped (as Prometheus would), each
 * request's latency kept.
 */
import { request } from 'undici';
import type { Job } from '../../src/model/job.js';
import { isTerminal } from '../../src/model/states.js';
import { getJob, jobSpec, submit } from './client.js';
import { BENCH_TOKEN } from './gantry.js';
import { SIM_JOB } from './sim-node.js';
import { now, sleep } from './util.js';

/** What the clients do: the stream's rate and jobs, the poll and scrape intervals. */
export interface ClientPlan {
  /** Jobs submitted per second, open loop, round robin over the nodes. */
  rate: number;
  /** Each job writes this many stdout lines, one every lineMs, then exits 0. */
  lines: number;
  lineMs: number;
  /** A client polls each of its jobs this often until it ends (as Airflow's sensor would). */
  pollMs: number;
  /** Every node's /metrics is read this often (as Prometheus would); 0: never. */
  scrapeSeconds: number;
}

/** A client's view of the fleet: submits, polls and scrapes over HTTP, as Airflow and Prometheus would. */
export class Clients {
  readonly submitMs: number[] = [];
  readonly pollMs: number[] = [];
  readonly scrapeMs: number[] = [];
  readonly ended: Job[] = [];
  errors = 0;
  private scraping: NodeJS.Timeout[] = [];

  constructor(
    private readonly urls: string[],
    private readonly cfg: ClientPlan,
  ) {}

  /** Submits `count` jobs at the configured rate (open loop) and polls each until it ends; resolves when all have. */
  async stream(count: number): Promise<void> {
    const t0 = now();
    const spec = jobSpec([SIM_JOB, String(this.cfg.lines), String(this.cfg.lineMs)]);
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const at = t0 + (i * 1000) / this.cfg.rate;
      const wait = at - now();
      if (wait > 0) await sleep(wait);
      jobs.push(this.one(this.urls[i % this.urls.length]!, spec));
    }
    await Promise.all(jobs);
  }

  private async one(url: string, spec: Record<string, unknown>): Promise<void> {
    let job: Job;
    const t = now();
    try {
      job = await submit(url, BENCH_TOKEN, spec);
    } catch {
      this.errors++;
      return;
    }
    this.submitMs.push(now() - t);
    const deadline = Date.now() + 300_000;
    while (!isTerminal(job.state) && Date.now() < deadline) {
      await sleep(this.cfg.pollMs);
      const pollUrl = this.urls[Math.floor(Math.random() * this.urls.length)]!;
      const tp = now();
      try {
        job = await getJob(pollUrl, BENCH_TOKEN, job.id);
        this.pollMs.push(now() - tp);
      } catch {
        this.errors++;
      }
    }
    if (isTerminal(job.state)) this.ended.push(job);
    else this.errors++;
  }

  /** Reads every node's /metrics every scrapeSeconds, spread over the interval. */
  startScrapes(): void {
    if (this.cfg.scrapeSeconds <= 0) return;
    const every = this.cfg.scrapeSeconds * 1000;
    this.urls.forEach((url, i) => {
      const first = setTimeout(
        () => {
          void this.scrape(url);
          this.scraping.push(setInterval(() => void this.scrape(url), every));
        },
        (i * every) / this.urls.length,
      );
      this.scraping.push(first);
    });
  }

  stopScrapes(): void {
    for (const t of this.scraping) clearTimeout(t);
    this.scraping = [];
  }

  private async scrape(url: string): Promise<void> {
    const t = now();
    try {
      await metricsText(url);
      this.scrapeMs.push(now() - t);
    } catch {
      this.errors++;
    }
  }
}

export async function metricsText(url: string): Promise<string> {
  const r = await request(`${url}/metrics`, { headers: { authorization: `Bearer ${BENCH_TOKEN}` } });
  const text = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`metrics: ${r.statusCode}`);
  return text;
}

/** Scheduling passes every node has made so far (gantry_scheduler_pass_seconds_count), summed. */
export async function passCount(urls: string[]): Promise<number> {
  const counts = await Promise.all(
    urls.map(async (u) => Number(/^gantry_scheduler_pass_seconds_count (\S+)$/m.exec(await metricsText(u))?.[1] ?? Number.NaN)),
  );
  return counts.reduce((a, b) => a + b, 0);
}
