import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { type JobCardReading, JobTelemetry } from '../gpu/telemetry/accumulator.js';
import type { CardSample, GpuReading } from '../gpu/telemetry/nvidia-smi.js';
import type { JobEventHub } from '../jobs/events.js';
import type { GpuSample } from '../model/gpu-telemetry.js';
import type { CardHolder } from '../model/history.js';
import type { ContainerRuntime } from '../runtime/runtime.js';
import type { JobRecord, Store } from '../store/store.js';
import type { Interruption } from './job-run.js';

export interface GpuSamplerDeps {
  store: Store;
  runtime: ContainerRuntime;
  events: JobEventHub;
  settings: Config['gpus']['telemetry'];
  /** This node's name: the sampler measures the jobs it runs. */
  node: string;
  /** The epoch this process registered with (NodeSeat.epoch), for its writes' fence; null while it holds no lease. */
  epoch: () => number | null;
  /** One reading of every card and compute process (nvidia-smi). */
  read: () => Promise<GpuReading>;
  /** Adds a `[gantry]` line to the log of a job this node runs (Scheduler.note). */
  note: (jobId: string, line: string) => void;
  /** Ends a job this node runs for a policy's cause (Scheduler.interrupt). */
  interrupt: (jobId: string, why: Interruption) => Promise<boolean>;
  /** A job's latest sample, for /metrics and its recent history. */
  onSample: (owner: string, sample: GpuSample) => void;
  /** Every card at a tick, with the jobs sampled on each (by card UUID), for the cards' recent history. */
  onReading: (at: number, cards: readonly CardSample[], holders: ReadonlyMap<string, readonly CardHolder[]>) => void;
  /** A job is no longer sampled (it ended, or left this node). */
  onGone: (jobId: string) => void;
  log: Logger;
}

/**
 * Samples the GPUs of the jobs this node runs, every GANTRY_GPU_SAMPLE_SECONDS:
 * one nvidia-smi reading per tick for every card, whatever the number of
 * jobs, and none while no GPU job runs. An exclusive card's figures are its
 * job's. On a shared card only memory is the job's own: nvidia-smi lists
 * compute processes by host PID, and the engine says which PIDs are the
 * container's. Each job's summary is stored with its run's fence (so a
 * sample never writes over a later attempt or an ended job), published to
 * its live followers, and judged by the idle and memory policies.
 * Ticks never overlap: a slow reading delays the next one.
 */
export class GpuSampler {
  private readonly tracked = new Map<string, JobTelemetry>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private failing = false;
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly d: GpuSamplerDeps) {}

  start(): void {
    if (this.d.settings.sampleSeconds <= 0 || this.timer || this.stopped) return;
    // A job that stops running leaves /metrics at once, not at the next tick.
    this.unsubscribe = this.d.events.onAnyStatus((job) => {
      if (job.state !== 'running' && this.tracked.has(job.id)) this.forget(job.id);
    });
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const id of this.tracked.keys()) this.d.onGone(id);
    this.tracked.clear();
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      void this.tick()
        .catch((err: unknown) => this.d.log.error({ err }, 'GPU telemetry sample failed'))
        .finally(() => {
          if (!this.stopped) this.schedule();
        });
    }, this.d.settings.sampleSeconds * 1000);
    this.timer.unref();
  }

  /** One sample of every GPU job this node runs now. */
  async tick(): Promise<void> {
    const jobs = (await this.d.store.jobs.active(this.d.node)).filter(
      (r) => r.state === 'running' && r.gpus.length > 0 && r.containerId !== null && r.startedAt !== null,
    );
    const running = new Set(jobs.map((r) => r.id));
    for (const id of [...this.tracked.keys()]) {
      if (!running.has(id)) this.forget(id);
    }
    if (jobs.length === 0) return;

    let reading: GpuReading;
    try {
      reading = await this.d.read();
      if (this.failing) this.d.log.info('GPU telemetry: nvidia-smi answers again');
      this.failing = false;
    } catch (err) {
      // Said once per outage, not at every tick.
      if (!this.failing) this.d.log.warn({ err }, 'GPU telemetry: nvidia-smi failed; jobs are not sampled until it answers');
      this.failing = true;
      return;
    }
    const at = Date.now();
    const cards = new Map(reading.cards.map((c) => [c.uuid, c]));
    this.d.onReading(at, reading.cards, holdersByCard(jobs));
    await Promise.all(jobs.map((r) => this.sampleJob(r, at, cards, reading)));
  }

  private forget(jobId: string): void {
    this.tracked.delete(jobId);
    this.d.onGone(jobId);
  }

  private async sampleJob(r: JobRecord, at: number, cards: Map<string, CardSample>, reading: GpuReading): Promise<void> {
    let t = this.tracked.get(r.id);
    if (t === undefined || t.attempt !== r.attempt) {
      t = new JobTelemetry(
        { attempt: r.attempt, startedAtMs: Date.parse(r.startedAt!), cards: r.gpus.length, declaredMemoryMiB: r.gpuMemoryMiB },
        this.d.settings,
        r.gpuTelemetry,
      );
      this.tracked.set(r.id, t);
    }
    let pids: Set<number> | null = null;
    if (t.shared) {
      try {
        pids = new Set(await this.d.runtime.processes(r.containerId!));
      } catch (err) {
        // Without its PIDs the job's memory is unknown: this sample skips the job rather than record 0.
        this.d.log.debug({ err, jobId: r.id }, 'GPU telemetry: the engine did not list the container’s processes');
        return;
      }
    }
    const readings: JobCardReading[] = [];
    for (const uuid of r.gpus) {
      const card = cards.get(uuid);
      if (!card) continue;
      const jobMemoryMiB =
        pids === null
          ? card.memoryUsedMiB
          : reading.apps.filter((a) => a.gpuUuid === uuid && pids.has(a.pid)).reduce((sum, a) => sum + (a.usedMemoryMiB ?? 0), 0);
      readings.push({ uuid, card, jobMemoryMiB });
    }
    if (readings.length === 0) return;
    const verdict = t.add(at, readings);
    const summary = t.summary();
    const epoch = this.d.epoch();
    if (epoch === null) return;
    const stored = await this.d.store.jobs
      .update(r.id, { gpuTelemetry: summary }, { fence: { node: this.d.node, attempt: r.attempt, epoch } })
      .catch((err: unknown) => {
        this.d.log.warn({ err, jobId: r.id }, 'GPU telemetry: could not store the summary');
        return null;
      });
    if (stored === undefined) {
      // Fenced: the job ended or moved on since it was listed.
      this.forget(r.id);
      return;
    }
    // It stopped running while the summary was stored: its series are gone and stay so.
    if (this.tracked.get(r.id) !== t) return;
    const sample: GpuSample = { jobId: r.id, time: new Date(at).toISOString(), gpus: verdict.cards, summary };
    this.d.onSample(r.owner, sample);
    this.d.events.publishTelemetry(sample);
    for (const w of verdict.warnings) {
      this.d.log.warn({ jobId: r.id, kind: w.kind, action: w.action }, `GPU telemetry: job ${r.id}: ${w.message}`);
      this.d.events.publishGpuWarning(r.id, w);
      this.d.note(r.id, `[gantry] GPU warning (${w.kind}${w.action === 'end' ? ', ending the job' : ''}): ${w.message}`);
    }
    if (verdict.end) await this.d.interrupt(r.id, verdict.end);
  }
}

/** The jobs on each card, by card UUID. */
function holdersByCard(jobs: readonly JobRecord[]): Map<string, CardHolder[]> {
  const byCard = new Map<string, CardHolder[]>();
  for (const r of jobs) {
    for (const uuid of r.gpus) {
      const list = byCard.get(uuid) ?? [];
      list.push({ jobId: r.id, owner: r.owner });
      byCard.set(uuid, list);
    }
  }
  return byCard;
}
