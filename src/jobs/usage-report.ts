import type { OwnerUsage, UsageReport } from '../model/usage.js';
import { gpuIntervals, gpuSecondsByOwner } from '../scheduling/usage.js';
import type { JobRecord, JobStore, NodeStore, UsageInterval } from '../store/store.js';

/** A GANTRY_GPU_MODEL_WEIGHTS entry: a card whose name contains `model`, case-insensitively, weighs `weight`. */
export interface ModelWeight {
  model: string;
  weight: number;
}

/** What a card is billed as: its model name (or "unknown"), and that model's weight. */
interface Billing {
  model: string;
  weight: number;
}

/** The model of a card no inventory lists now (a node that left the fleet with a different card): it weighs 1. */
export const UNKNOWN_MODEL = 'unknown';

const hours = (seconds: number) => round(seconds / 3600, 6);
const round = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits;

/**
 * GET /v1/usage's report: GPU time per owner over a window, read from the
 * jobs' records and what retention kept of pruned ones (scheduling/usage.ts
 * does the arithmetic), with each card's time weighted by its model. A card's model comes from the inventories the
 * fleet's nodes registered (this node's own among them: a single host is a
 * fleet of one), as they are now.
 */
export class UsageReporter {
  constructor(
    private readonly d: {
      jobs: Pick<JobStore, 'usageSources'>;
      nodes: Pick<NodeStore, 'list'>;
      weights: readonly ModelWeight[];
    },
  ) {}

  /** Owners with GPU time in [from, to), most first; only `owner` when given. */
  async report(window: { from: string; to: string; owner?: string | undefined }, nowMs = Date.now()): Promise<UsageReport> {
    const { records, pruned } = await this.d.jobs.usageSources(window.from, window.to);
    const owned = <T extends { owner: string }>(all: T[]) =>
      window.owner === undefined ? all : all.filter((r) => r.owner === window.owner);
    const usage = gpuSecondsByOwner(owned(records), { fromMs: Date.parse(window.from), toMs: Date.parse(window.to) }, nowMs, owned(pruned));
    const billing = await this.billing();
    return { from: window.from, to: window.to, items: usage.map((u) => this.item(u, billing)) };
  }

  private item(u: ReturnType<typeof gpuSecondsByOwner>[number], billing: ReadonlyMap<string, Billing>): OwnerUsage {
    const byModel = new Map<string, { weight: number; gpuSeconds: number }>();
    for (const [uuid, seconds] of u.byGpu) {
      const b = billing.get(uuid) ?? { model: UNKNOWN_MODEL, weight: 1 };
      const entry = byModel.get(b.model) ?? { weight: b.weight, gpuSeconds: 0 };
      entry.gpuSeconds += seconds;
      byModel.set(b.model, entry);
    }
    const models = [...byModel]
      .map(([model, m]) => ({
        model,
        weight: m.weight,
        gpuSeconds: round(m.gpuSeconds, 3),
        gpuHours: hours(m.gpuSeconds),
        weightedGpuHours: hours(m.gpuSeconds * m.weight),
      }))
      .sort((a, b) => b.gpuSeconds - a.gpuSeconds || (a.model < b.model ? -1 : 1));
    const weightedSeconds = [...byModel.values()].reduce((sum, m) => sum + m.gpuSeconds * m.weight, 0);
    return {
      owner: u.owner,
      gpuSeconds: round(u.gpuSeconds, 3),
      gpuHours: hours(u.gpuSeconds),
      weightedGpuHours: hours(weightedSeconds),
      jobs: u.jobs,
      attempts: u.attempts,
      byModel: models,
    };
  }

  /** Each known card's model and weight, by UUID. */
  private async billing(): Promise<Map<string, Billing>> {
    const out = new Map<string, Billing>();
    const bill = (uuid: string, name: string) => out.set(uuid, { model: name, weight: modelWeight(name, this.d.weights) });
    for (const node of await this.d.nodes.list()) for (const g of node.gpus) bill(g.uuid, g.name);
    return out;
  }
}

/** The weight of the first entry whose model is part of the card's name, case-insensitively; 1 when none is. */
export function modelWeight(name: string, weights: readonly ModelWeight[]): number {
  const lower = name.toLowerCase();
  return weights.find((w) => lower.includes(w.model.toLowerCase()))?.weight ?? 1;
}

/** What retention keeps of a finished job's record before pruning it: its GPU intervals, for usage accounting (none of an unfinished job). */
export function usageToKeep(record: JobRecord): UsageInterval[] {
  if (record.finishedAt === null) return [];
  return gpuIntervals(record, Date.parse(record.finishedAt)).map((i) => ({
    jobId: record.id,
    owner: record.owner,
    attempt: i.attempt,
    gpus: i.gpus,
    startedAt: new Date(i.startMs).toISOString(),
    endedAt: new Date(i.endMs).toISOString(),
  }));
}
