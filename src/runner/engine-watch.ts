import type { Logger } from 'pino';
import { type ContainerRuntime, isUnreachable } from '../runtime/runtime.js';

const FIRST_PROBE_MS = 500;
const MAX_PROBE_MS = 5000;
/** When the engine is asked whether it is going away (ms after the question, one after another). */
const SHUTDOWN_PROBES_MS = [0, 500, 1000, 1500];

/**
 * Whether the container engine answers. Once a call finds it unreachable
 * (a socket gone during a Docker upgrade or restart), it is pinged with a
 * growing interval until it answers again; whoever waits for it then goes
 * on. The engine being away is a fault of the host, never a job's failure.
 */
export class EngineWatch {
  private down: { since: number; reason: string; back: Promise<void>; resolve: () => void } | null = null;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly backListeners: (() => void)[] = [];

  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly log: Logger,
  ) {}

  /** Calls `fn` each time the engine answers again after it was away. */
  onBack(fn: () => void): void {
    this.backListeners.push(fn);
  }

  /** Why the engine is unreachable, or null while it answers. */
  get unreachable(): string | null {
    return this.down?.reason ?? null;
  }

  /** Records that a call found the engine unreachable, and starts probing for it. */
  lost(reason: string): void {
    if (this.down || this.stopped) return;
    let resolve!: () => void;
    const back = new Promise<void>((r) => (resolve = r));
    this.down = { since: Date.now(), reason, back, resolve };
    this.log.warn({ reason }, 'the container engine is unreachable; jobs wait until it answers again');
    const probe = (delay: number) => {
      this.timer = setTimeout(() => {
        this.runtime.ping().then(
          () => {
            const away = Date.now() - (this.down?.since ?? Date.now());
            this.down = null;
            this.timer = null;
            this.log.info({ awayMs: away }, 'the container engine answers again');
            resolve();
            for (const fn of this.backListeners) fn();
          },
          () => {
            if (!this.stopped) probe(Math.min(delay * 2, MAX_PROBE_MS));
          },
        );
      }, delay);
      // The API server keeps a running Gantry alive; probing alone must not keep a closed one.
      this.timer.unref();
    };
    probe(FIRST_PROBE_MS);
  }

  /**
   * Whether the engine is shutting down, asked when a container died of a
   * signal Gantry did not send: the engine stops its containers before it
   * closes its API, so such an exit is seen first and the engine vanishes a
   * moment later. A container signalled from anywhere else finds the engine
   * still answering. Marks the engine lost when it stopped answering.
   */
  async goingAway(): Promise<boolean> {
    for (const delay of SHUTDOWN_PROBES_MS) {
      await new Promise((r) => setTimeout(r, delay));
      try {
        await this.runtime.ping();
      } catch (err) {
        if (!isUnreachable(err)) return false;
        this.lost((err as Error).message);
        return true;
      }
    }
    return false;
  }

  /** Resolves once the engine answers (at once when it is not known to be away). */
  async whenUp(): Promise<void> {
    await this.down?.back;
  }

  /** Stops probing; whoever waits for the engine goes on (and finds Gantry stopping). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.down?.resolve();
  }
}
