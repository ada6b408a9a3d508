import { z } from 'zod';
import type { GpuDevice } from '../inventory.js';

export const GPU_HEALTH_STATES = ['healthy', 'unhealthy', 'drained'] as const;
export type GpuHealthState = (typeof GPU_HEALTH_STATES)[number];

export const GpuHealthSchema = z
  .object({
    state: z
      .enum(GPU_HEALTH_STATES)
      .describe(
        'healthy: jobs may get it. unhealthy: a device fault was seen (the job on it failed with cause gpu_error); no new job gets it until an admin undrains it. ' +
          'drained: an admin took it out of service; jobs on it carry on, no new job gets it.',
      ),
    code: z
      .string()
      .nullable()
      .describe(
        'Why it is out of service, as a stable code: xid_<N> (a device Xid in the kernel log), ecc_uncorrected, retirement_pending, row_remap_failure, no_answer (nvidia-smi no longer answers for it), drained (by an admin); null when healthy.',
      ),
    reason: z.string().nullable().describe('The same in words (for a fault, what the driver or nvidia-smi said); null when healthy.'),
    since: z.string().nullable().describe('When it went out of service (ISO 8601, UTC); null when healthy.'),
    by: z.string().nullable().describe('The admin who drained it (token owner); null for a fault or when healthy.'),
    smokeJob: z
      .string()
      .nullable()
      .default(null)
      .describe(
        'The smoke job checking the card now (POST /v1/gpus/{uuid}/smoke): the only job that may get it while it is out of service; ' +
          'if it succeeds the card is healthy again, if not it stays out and its reason says so. Null for none.',
      ),
  })
  .meta({ id: 'GpuHealth' });
export type GpuHealth = z.infer<typeof GpuHealthSchema>;

/** What makes a card unhealthy: a stable code and what was seen. */
export interface DeviceFault {
  code: string;
  reason: string;
}

/** Where the cards' health outlives a restart (the store's settings satisfy it). */
export interface HealthRecords {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string): Promise<void>;
}

const HEALTHY: GpuHealth = { state: 'healthy', code: null, reason: null, since: null, by: null, smokeJob: null };
const recordKey = (uuid: string) => `gpu-health:${uuid}`;

/**
 * Each card's health: healthy, unhealthy (a device fault was seen) or
 * drained (by an admin). A card that is not healthy is given to no new job;
 * only an admin's undrain makes it healthy again. Every change is stored
 * (HealthRecords), so a restart keeps it.
 */
export class GpuHealthBook {
  private readonly cards = new Map<string, GpuHealth>();
  private readonly faultListeners: ((uuid: string, fault: DeviceFault) => void)[] = [];
  private readonly changeListeners: (() => void)[] = [];
  /** Faults raised, by card, code and class, for /metrics. */
  /** The fault codes raised on each card since it was last healthy. */
  private readonly seen = new Map<string, Set<string>>();
  private readonly counts = new Map<string, { uuid: string; code: string; class: 'device' | 'application'; n: number }>();

  constructor(
    readonly devices: readonly GpuDevice[],
    private readonly records: HealthRecords,
    private readonly log: { warn(obj: object, msg: string): void },
  ) {}

  /** Reads back what was stored; a record that cannot be read leaves its card healthy (and says so). */
  async load(): Promise<void> {
    for (const d of this.devices) {
      const raw = await this.records.get(recordKey(d.uuid));
      if (raw === undefined) continue;
      const parsed = GpuHealthSchema.safeParse(parseJson(raw));
      if (parsed.success) this.cards.set(d.uuid, parsed.data);
      else this.log.warn({ uuid: d.uuid, raw }, 'unreadable GPU health record; the card is taken as healthy');
    }
  }

  has(uuid: string): boolean {
    return this.devices.some((d) => d.uuid === uuid);
  }

  get(uuid: string): GpuHealth {
    return this.cards.get(uuid) ?? HEALTHY;
  }

  /**
   * Why the card is given to no new job ("unhealthy: …", "drained: …"), or
   * null when it may be: a healthy card to any job, one out of service to
   * its smoke job only.
   */
  withheld(uuid: string, jobId?: string): string | null {
    const h = this.get(uuid);
    if (h.state === 'healthy' || (jobId !== undefined && h.smokeJob === jobId)) return null;
    return `${h.state}: ${h.reason ?? h.code}`;
  }

  /**
   * A smoke job will check the card out of service: it alone may get the
   * card. False when the card is healthy (nothing to check) or another
   * smoke job checks it already.
   */
  async smoke(uuid: string, jobId: string): Promise<boolean> {
    const h = this.get(uuid);
    if (h.state === 'healthy' || h.smokeJob !== null) return false;
    await this.put(uuid, { ...h, smokeJob: jobId });
    return true;
  }

  /** A job ended: if it was a card's smoke job, the card is healthy again when it succeeded, else it stays out and says why. */
  async smokeEnded(jobId: string, succeeded: boolean, why: string | null): Promise<void> {
    const uuid = [...this.cards].find(([, h]) => h.smokeJob === jobId)?.[0];
    if (uuid === undefined) return;
    if (succeeded) {
      this.seen.delete(uuid);
      await this.put(uuid, HEALTHY);
      return;
    }
    const h = this.get(uuid);
    await this.put(uuid, { ...h, smokeJob: null, reason: `${h.reason ?? h.code}; smoke job ${jobId} did not pass: ${why ?? 'it failed'}` });
  }

  /**
   * A device fault on the card: it becomes unhealthy (a drained card too:
   * the fault is the news). Listeners hear of it unless the card was already
   * unhealthy for the same code (a condition nvidia-smi reports at every
   * poll is news once). Returns whether it was news.
   */
  async fault(uuid: string, fault: DeviceFault): Promise<boolean> {
    const now = this.get(uuid);
    const seen = this.seen.get(uuid) ?? new Set<string>();
    if (seen.has(fault.code) || (now.state === 'unhealthy' && now.code === fault.code)) return false;
    this.seen.set(uuid, seen.add(fault.code));
    this.count(uuid, fault.code, 'device');
    if (now.state !== 'unhealthy') {
      await this.put(uuid, {
        state: 'unhealthy',
        code: fault.code,
        reason: fault.reason,
        since: new Date().toISOString(),
        by: null,
        smokeJob: null,
      });
    }
    for (const fn of this.faultListeners) fn(uuid, fault);
    return true;
  }

  /** An application Xid on the card: counted, the card stays as it is. */
  applicationFault(uuid: string, code: string): void {
    this.count(uuid, code, 'application');
  }

  /** An admin takes the card out of service; an unhealthy card stays unhealthy (its fault is the better why). */
  async drain(uuid: string, by: string, reason: string | undefined): Promise<GpuHealth> {
    if (this.get(uuid).state === 'healthy') {
      await this.put(uuid, {
        state: 'drained',
        code: 'drained',
        reason: reason ?? `drained by ${by}`,
        since: new Date().toISOString(),
        by,
        smokeJob: null,
      });
    }
    return this.get(uuid);
  }

  /** An admin says the card is fine: healthy again, whatever it was. */
  async undrain(uuid: string): Promise<GpuHealth> {
    this.seen.delete(uuid);
    if (this.get(uuid).state !== 'healthy') await this.put(uuid, HEALTHY);
    return this.get(uuid);
  }

  onFault(fn: (uuid: string, fault: DeviceFault) => void): void {
    this.faultListeners.push(fn);
  }

  /** Told after any card's state changed (an undrain frees a card for queued jobs). */
  onChange(fn: () => void): void {
    this.changeListeners.push(fn);
  }

  faultCounts(): Iterable<{ uuid: string; code: string; class: 'device' | 'application'; n: number }> {
    return this.counts.values();
  }

  private count(uuid: string, code: string, cls: 'device' | 'application'): void {
    const key = `${uuid}\n${code}\n${cls}`;
    const c = this.counts.get(key) ?? { uuid, code, class: cls, n: 0 };
    c.n += 1;
    this.counts.set(key, c);
  }

  /** Changes the card in memory first (it is withheld at once), then stores it; a store that fails is logged, the change stands. */
  private async put(uuid: string, health: GpuHealth): Promise<void> {
    if (health.state === 'healthy') this.cards.delete(uuid);
    else this.cards.set(uuid, health);
    for (const fn of this.changeListeners) fn();
    try {
      await this.records.set(recordKey(uuid), JSON.stringify(health));
    } catch (err) {
      this.log.warn({ err, uuid }, 'GPU health not stored: it holds until this process ends');
    }
  }
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}
