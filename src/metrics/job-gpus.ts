import { Gauge, type Registry } from 'prom-client';
import type { GpuSample } from '../model/gpu-telemetry.js';

type Labels = 'job_id' | 'owner' | 'gpu';

/**
 * Live GPU figures of the jobs this node runs, one series per job and card.
 * A job's series are removed when it stops being sampled, so the label set
 * is bounded by the jobs running now, not by every job that ever ran.
 */
export class JobGpuMetrics {
  private readonly utilization: Gauge<Labels>;
  private readonly memory: Gauge<Labels>;
  private readonly power: Gauge<Labels>;
  /** The label sets each job has now, by job id. */
  private readonly series = new Map<string, { owner: string; gpus: string[] }>();

  constructor(registers: Registry[]) {
    const labelNames = ['job_id', 'owner', 'gpu'] as const;
    this.utilization = new Gauge({
      name: 'gantry_job_gpu_utilization_ratio',
      help: "Utilisation (0-1) of a running job's GPU at the last sample; absent on a shared card (nvidia-smi cannot split it by process).",
      labelNames,
      registers,
    });
    this.memory = new Gauge({
      name: 'gantry_job_gpu_memory_used_bytes',
      help: "GPU memory a running job uses on the card at the last sample (on a shared card: its own processes').",
      labelNames,
      registers,
    });
    this.power = new Gauge({
      name: 'gantry_job_gpu_power_watts',
      help: "Power draw of a running job's GPU at the last sample; absent on a shared card.",
      labelNames,
      registers,
    });
  }

  /** The job's latest sample replaces its previous one. */
  set(owner: string, sample: GpuSample): void {
    this.remove(sample.jobId);
    for (const c of sample.gpus) {
      const labels = { job_id: sample.jobId, owner, gpu: c.uuid };
      if (c.utilizationPct !== null) this.utilization.set(labels, c.utilizationPct / 100);
      if (c.memoryUsedMiB !== null) this.memory.set(labels, c.memoryUsedMiB * 1024 * 1024);
      if (c.powerWatts !== null) this.power.set(labels, c.powerWatts);
    }
    this.series.set(sample.jobId, { owner, gpus: sample.gpus.map((c) => c.uuid) });
  }

  /** The job is no longer sampled: its series go. */
  remove(jobId: string): void {
    const had = this.series.get(jobId);
    if (!had) return;
    for (const gpu of had.gpus) {
      const labels = { job_id: jobId, owner: had.owner, gpu };
      this.utilization.remove(labels);
      this.memory.remove(labels);
      this.power.remove(labels);
    }
    this.series.delete(jobId);
  }
}
