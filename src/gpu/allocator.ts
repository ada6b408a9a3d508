import type { GpuRequest } from '../model/job.js';
import type { WaitInfo } from '../model/queue.js';
import type { GpuDevice } from './inventory.js';

export interface Allocation {
  uuids: string[];
  /** Declared memory per card when sharing; null for exclusive use. */
  memoryMiB: number | null;
}

/** Told the cards whose holders changed, after each allocation, restore and release. */
export type HoldersListener = (uuids: readonly string[]) => void;

interface Holding {
  jobId: string;
  memoryMiB: number | null;
}

/**
 * Tracks which job holds which GPU. Exclusive by default; a `memoryMiB`
 * request shares one card with other sharing jobs while the declared amounts
 * fit (accounting only: nothing inside the container enforces it).
 * Never oversubscribes, and release is idempotent.
 */
export class GpuAllocator {
  private readonly holdings = new Map<string, Holding[]>();
  private readonly byJob = new Map<string, Allocation>();
  private readonly listeners: HoldersListener[] = [];
  /** Why a card is given to no new job (unhealthy, drained), or null: set by withhold(). */
  private withheld: (uuid: string, jobId?: string) => string | null = () => null;

  constructor(readonly devices: readonly GpuDevice[]) {
    for (const d of devices) this.holdings.set(d.uuid, []);
  }

  /**
   * Cards `why` names a reason for are given to no new job: they are out of
   * service for now, so a request for them waits (impossible() still counts
   * them: the card may come back). Jobs already holding them keep them.
   */
  withhold(why: (uuid: string, jobId?: string) => string | null): void {
    this.withheld = why;
  }

  /**
   * Why a job that waits for GPUs waits for cards out of service: the
   * request could be met on this host, but not by the cards in service, even
   * all free. Null when cards in service could meet it (it waits for jobs to end).
   */
  outOfService(jobId: string, req: GpuRequest, model?: string): WaitInfo | null {
    const out = this.devices.filter((d) => this.withheld(d.uuid, jobId) !== null);
    if (out.length === 0 || this.impossible(req, model) !== null) return null;
    if (new GpuAllocator(this.devices.filter((d) => !out.includes(d))).impossible(req, model) === null) return null;
    const which = out.map((d) => `GPU ${d.index} (${this.withheld(d.uuid)})`).join('; ');
    return { code: 'gpus_out_of_service', text: `waiting for GPUs out of service to come back: ${which}`, estimatedStartAt: null };
  }

  /**
   * Why the request can never be met on this host, or null when it can.
   * With a model, only GPUs whose name contains it (case-insensitively) count.
   */
  impossible(req: GpuRequest, model?: string): string | null {
    const eligible = this.eligible(model);
    const of = model === undefined ? '' : ` ${model}`;
    if (req.ids) {
      const unknown = req.ids.filter((id) => this.resolve(id) === undefined);
      if (unknown.length) return `unknown GPU ${unknown.map((u) => `"${u}"`).join(', ')}`;
      const wrongModel = req.ids.filter((id) => !eligible.includes(this.resolve(id)!));
      if (wrongModel.length) return `GPU ${wrongModel.map((u) => `"${u}"`).join(', ')} is not of model "${model}"`;
      const uuids = req.ids.map((id) => this.resolve(id)!.uuid);
      if (new Set(uuids).size !== uuids.length) return 'the same GPU is named twice';
      return null;
    }
    const count = req.count ?? 0;
    if (count > eligible.length) {
      return `asks for ${count}${of} GPU(s) but this host has ${eligible.length}`;
    }
    if (req.memoryMiB !== undefined && !eligible.some((d) => d.memoryMiB >= req.memoryMiB!)) {
      return `asks for ${req.memoryMiB} MiB but the largest${of} GPU has ${Math.max(0, ...eligible.map((d) => d.memoryMiB))} MiB`;
    }
    return null;
  }

  /** What the job holds, if anything. */
  allocationOf(jobId: string): Allocation | undefined {
    return this.byJob.get(jobId);
  }

  /** Allocates now if the request fits, else returns null (the job waits). */
  tryAllocate(jobId: string, req: GpuRequest, model?: string): Allocation | null {
    const existing = this.byJob.get(jobId);
    if (existing) return existing;
    let chosen: GpuDevice[];
    if (req.ids) {
      chosen = req.ids.map((id) => this.resolve(id)!);
      if (!chosen.every((d) => this.isFree(d) && this.inService(d, jobId))) return null;
    } else if (req.memoryMiB !== undefined) {
      // Best fit: the shared card with the least room that still fits, so
      // whole cards stay free for exclusive jobs.
      const fits = this.eligible(model)
        .filter((d) => this.inService(d, jobId) && this.sharedRoom(d) >= req.memoryMiB!)
        .sort((a, b) => this.sharedRoom(a) - this.sharedRoom(b) || a.index - b.index);
      if (fits.length === 0) return null;
      chosen = [fits[0]!];
    } else {
      const free = this.eligible(model).filter((d) => this.isFree(d) && this.inService(d, jobId));
      if (free.length < (req.count ?? 0)) return null;
      chosen = free.slice(0, req.count);
    }
    const alloc: Allocation = { uuids: chosen.map((d) => d.uuid), memoryMiB: req.memoryMiB ?? null };
    this.hold(jobId, alloc);
    this.changed(alloc.uuids);
    return alloc;
  }

  /**
   * Re-registers an allocation read back after a restart. A GPU no longer in
   * the inventory is ignored (the job keeps running; nothing else gets it).
   */
  restore(jobId: string, alloc: Allocation): void {
    if (this.byJob.has(jobId)) return;
    const uuids = alloc.uuids.filter((u) => this.holdings.has(u));
    this.hold(jobId, { uuids, memoryMiB: alloc.memoryMiB });
    this.changed(uuids);
  }

  /** Whether the job could take these cards now: each known and in service, and free (exclusive use) or with the room (shared). */
  fits(jobId: string, alloc: Allocation): boolean {
    return alloc.uuids.every((uuid) => {
      const d = this.devices.find((x) => x.uuid === uuid);
      if (d === undefined || !this.inService(d, jobId)) return false;
      return alloc.memoryMiB === null ? this.isFree(d) : this.sharedRoom(d) >= alloc.memoryMiB;
    });
  }

  /** The cards given to no new job now, with why (see withhold). */
  withheldCards(): { uuid: string; why: string }[] {
    return this.devices.flatMap((d) => {
      const why = this.withheld(d.uuid);
      return why === null ? [] : [{ uuid: d.uuid, why }];
    });
  }

  /** Frees the job's GPUs; returns false when it held none (already released). */
  release(jobId: string): boolean {
    const alloc = this.byJob.get(jobId);
    if (!alloc) return false;
    for (const uuid of alloc.uuids) {
      const list = this.holdings.get(uuid);
      if (list)
        this.holdings.set(
          uuid,
          list.filter((h) => h.jobId !== jobId),
        );
    }
    this.byJob.delete(jobId);
    this.changed(alloc.uuids);
    return true;
  }

  /**
   * Calls `fn` with the cards whose holders changed, after the change. A
   * clone has no listeners: trying allocations out changes nothing real.
   */
  onHoldersChange(fn: HoldersListener): void {
    this.listeners.push(fn);
  }

  /** A copy to try allocations on ("what if these jobs ended?") without touching this one. */
  clone(): GpuAllocator {
    const copy = new GpuAllocator(this.devices);
    copy.withhold(this.withheld);
    for (const [jobId, alloc] of this.byJob) copy.hold(jobId, alloc);
    return copy;
  }

  /** The jobs that hold GPUs now. */
  holdingJobs(): string[] {
    return [...this.byJob.keys()];
  }

  holders(uuid: string): readonly Holding[] {
    return this.holdings.get(uuid) ?? [];
  }

  private changed(uuids: readonly string[]): void {
    for (const fn of this.listeners) fn(uuids);
  }

  private hold(jobId: string, alloc: Allocation): void {
    for (const uuid of alloc.uuids) this.holdings.get(uuid)?.push({ jobId, memoryMiB: alloc.memoryMiB });
    this.byJob.set(jobId, alloc);
  }

  /** The GPUs of the model (a case-insensitive part of their name), or all of them. */
  private eligible(model: string | undefined): readonly GpuDevice[] {
    if (model === undefined) return this.devices;
    const m = model.toLowerCase();
    return this.devices.filter((d) => d.name.toLowerCase().includes(m));
  }

  private resolve(id: string): GpuDevice | undefined {
    return /^\d+$/.test(id) ? this.devices.find((d) => d.index === Number(id)) : this.devices.find((d) => d.uuid === id);
  }

  private inService(d: GpuDevice, jobId: string): boolean {
    return this.withheld(d.uuid, jobId) === null;
  }

  private isFree(d: GpuDevice): boolean {
    return (this.holdings.get(d.uuid) ?? []).length === 0;
  }

  /** Memory left for sharing jobs; 0 when an exclusive job holds the card. */
  private sharedRoom(d: GpuDevice): number {
    const held = this.holdings.get(d.uuid) ?? [];
    if (held.some((h) => h.memoryMiB === null)) return 0;
    return d.memoryMiB - held.reduce((sum, h) => sum + (h.memoryMiB ?? 0), 0);
  }
}
