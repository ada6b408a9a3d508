import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { KernelLogReader } from './kernel-log.js';
import { type CardReading, HEALTH_QUERY, parseHealthCsv, parseRemapCsv, REMAP_QUERY } from './smi-health.js';
import type { DeviceFault, GpuHealthBook } from './state.js';
import { parseXidLine, pciKey, type XidEvent } from './xid.js';

const run = promisify(execFile);

/**
 * Polls in a row in which nvidia-smi did not answer for a card before it is
 * taken for dead: one slow answer on a loaded host is not a lost card.
 */
export const MISSES_BEFORE_NO_ANSWER = 2;

export interface MonitorOptions {
  health: GpuHealthBook;
  intervalMs: number;
  /** The nvidia-smi to run (a name on the PATH, or a path). */
  nvidiaSmi: string;
  /** The kernel log's reader; null: Xids are not watched. */
  kernelLog: KernelLogReader | null;
  /** Xids that are the program's fault, not the card's. */
  appXids: ReadonlySet<number>;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  /** Told of an application Xid on a card (the job on it fails by its own CUDA error). */
  onApplicationXid?: (uuid: string, event: XidEvent) => void;
  /** How long one nvidia-smi run may take; default: the interval, between 5 and 30 s. */
  smiTimeoutMs?: number;
  /** Runs a command (execFile by default; a test stands in for a process stuck in the driver, which no test can make). */
  runCommand?: (file: string, args: string[], opts: { timeout: number; killSignal: NodeJS.Signals }) => Promise<{ stdout: string }>;
}

/** An nvidia-smi that outlived its deadline, even killed: stuck in the driver, it may never exit. */
class SmiHung extends Error {}

type SmiAnswer =
  | { kind: 'absent' }
  | { kind: 'answered'; readings: CardReading[]; remap: Map<string, boolean | null> }
  | { kind: 'failed'; why: string };

/**
 * Watches the cards of this host for device faults: every interval it asks
 * nvidia-smi for their ECC and memory-repair state, and reads the Xids the
 * driver wrote to the kernel log since the last look. A device fault makes
 * the card unhealthy (GpuHealthBook); an application Xid (appXids) only
 * counts. A card nvidia-smi stops answering for (MISSES_BEFORE_NO_ANSWER
 * polls) is unhealthy too, once it has answered at least once: a static
 * inventory may name cards nvidia-smi never knew.
 */
export class HealthMonitor {
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  /** PCI address (pciKey) → card, learnt from nvidia-smi's answers, for attributing Xids. */
  private readonly byPci = new Map<string, string>();
  private readonly answered = new Set<string>();
  private readonly misses = new Map<string, number>();
  private smiMissing = false;
  private kernelLogError: string | null = null;
  /** An nvidia-smi that has not exited yet: no other is started meanwhile, so a driver that hangs them does not pile them up. */
  private stuck: { since: number } | null = null;

  constructor(private readonly o: MonitorOptions) {}

  start(): void {
    if (this.timer) return;
    void this.tick();
    this.timer = setInterval(() => void this.tick(), this.o.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.ticking;
    this.o.kernelLog?.close();
  }

  /** One look at nvidia-smi and the kernel log; looks never overlap. */
  tick(): Promise<void> {
    if (this.ticking) return this.ticking;
    // A look that fails is logged; the next one tries again (a timer's rejected promise would end the process).
    this.ticking = this.look()
      .catch((err: unknown) => this.o.log.warn({ err }, 'GPU health: a look at the cards failed'))
      .finally(() => {
        this.ticking = null;
      });
    return this.ticking;
  }

  private async look(): Promise<void> {
    const answer = await this.askSmi();
    await this.judgeSmi(answer);
    for (const message of this.readKernelLog()) {
      const event = parseXidLine(message);
      if (event) await this.judgeXid(event);
    }
  }

  private async askSmi(): Promise<SmiAnswer> {
    const timeout = this.o.smiTimeoutMs ?? Math.max(5_000, Math.min(30_000, this.o.intervalMs));
    if (this.stuck) {
      return { kind: 'failed', why: `an nvidia-smi started ${Math.round((Date.now() - this.stuck.since) / 1000)} s ago has not exited` };
    }
    const ask = (args: string[]) => this.runSmi([...args, '--format=csv,noheader,nounits'], timeout);
    try {
      const health = await ask([`--query-gpu=${HEALTH_QUERY}`]).catch((err: { stdout?: string }) => {
        // A lost card makes nvidia-smi exit non-zero while it still prints the others.
        if (err.stdout && parseHealthCsv(err.stdout).length > 0) return err.stdout;
        throw err;
      });
      const remap = await ask([`--query-remapped-rows=${REMAP_QUERY}`]).catch(() => '');
      this.smiMissing = false;
      return { kind: 'answered', readings: parseHealthCsv(health), remap: parseRemapCsv(remap) };
    } catch (err) {
      const e = err as { code?: string | number; killed?: boolean; stderr?: string; stdout?: string; message: string };
      if (e.code === 'ENOENT') {
        if (!this.smiMissing)
          this.o.log.warn({ nvidiaSmi: this.o.nvidiaSmi }, 'GPU health: nvidia-smi not found; only the kernel log is watched');
        this.smiMissing = true;
        return { kind: 'absent' };
      }
      const said = (e.stderr || e.stdout || '').trim().split('\n')[0];
      return {
        kind: 'failed',
        why:
          e.killed || err instanceof SmiHung
            ? `nvidia-smi did not answer within ${timeout / 1000} s`
            : `nvidia-smi failed: ${said || e.message}`,
      };
    }
  }

  /**
   * Runs nvidia-smi, killed at the deadline. One that does not exit even
   * then (stuck in the driver) is given up on a second later: the poll goes
   * on without it, and it is remembered until it exits.
   */
  private runSmi(args: string[], timeout: number): Promise<string> {
    const child = (this.o.runCommand ?? run)(this.o.nvidiaSmi, args, { timeout, killSignal: 'SIGKILL' });
    const since = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const given = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.stuck = { since };
        reject(new SmiHung());
      }, timeout + 1000);
    });
    const answered = child.then((r) => r.stdout);
    void child
      .catch(() => undefined)
      .finally(() => {
        clearTimeout(timer);
        if (this.stuck?.since === since) this.stuck = null;
      });
    return Promise.race([answered, given]);
  }

  private async judgeSmi(answer: SmiAnswer): Promise<void> {
    if (answer.kind === 'absent') return;
    const readings = answer.kind === 'answered' ? new Map(answer.readings.map((r) => [r.uuid, r])) : new Map<string, CardReading>();
    for (const d of this.o.health.devices) {
      const r = readings.get(d.uuid);
      if (r) {
        this.answered.add(d.uuid);
        this.misses.delete(d.uuid);
        const pci = pciKey(r.busId);
        if (pci) this.byPci.set(pci, d.uuid);
        for (const fault of readingFaults(r, answer.kind === 'answered' ? (answer.remap.get(d.uuid) ?? null) : null)) {
          await this.raise(d.uuid, fault);
        }
        continue;
      }
      if (!this.answered.has(d.uuid)) continue;
      const missed = (this.misses.get(d.uuid) ?? 0) + 1;
      this.misses.set(d.uuid, missed);
      if (missed >= MISSES_BEFORE_NO_ANSWER) {
        const why = answer.kind === 'failed' ? answer.why : 'nvidia-smi no longer lists it';
        await this.raise(d.uuid, { code: 'no_answer', reason: `the card stopped answering: ${why} (${missed} polls in a row)` });
      }
    }
  }

  private readKernelLog(): string[] {
    if (!this.o.kernelLog) return [];
    try {
      const messages = this.o.kernelLog.read();
      this.kernelLogError = null;
      return messages;
    } catch (err) {
      const why = (err as Error).message;
      if (this.kernelLogError !== why)
        this.o.log.warn({ err, path: this.o.kernelLog.path }, 'GPU health: the kernel log cannot be read; Xids are not seen');
      this.kernelLogError = why;
      this.o.kernelLog.close();
      return [];
    }
  }

  private async judgeXid(event: XidEvent): Promise<void> {
    const uuid = this.byPci.get(event.pci);
    if (uuid === undefined) {
      this.o.log.warn({ xid: event }, 'GPU health: an Xid on a PCI address of no card nvidia-smi reported here');
      return;
    }
    const code = `xid_${event.xid}`;
    if (this.o.appXids.has(event.xid)) {
      this.o.health.applicationFault(uuid, code);
      this.o.log.info({ uuid, xid: event }, 'GPU health: an application Xid; the card stays in service');
      this.o.onApplicationXid?.(uuid, event);
      return;
    }
    await this.raise(uuid, { code, reason: `Xid ${event.xid}${event.text ? `: ${event.text}` : ''}` });
  }

  private async raise(uuid: string, fault: DeviceFault): Promise<void> {
    if (await this.o.health.fault(uuid, fault)) this.o.log.warn({ uuid, fault }, 'GPU health: a device fault; the card is out of service');
  }
}

/** The device faults one card's readings show now. */
export function readingFaults(r: CardReading, remapFailed: boolean | null): DeviceFault[] {
  const faults: DeviceFault[] = [];
  if (r.eccUncorrected !== null && r.eccUncorrected > 0) {
    faults.push({
      code: 'ecc_uncorrected',
      reason: `${r.eccUncorrected} uncorrectable ECC error(s) since the driver loaded (ecc.errors.uncorrected.volatile.total)`,
    });
  }
  if (r.retirementPending === true) {
    faults.push({ code: 'retirement_pending', reason: 'a bad memory page waits for a reset to be retired (retired_pages.pending)' });
  }
  if (remapFailed === true) {
    faults.push({ code: 'row_remap_failure', reason: 'the row remapper could not replace a bad memory row (remapped_rows.failure)' });
  }
  return faults;
}
