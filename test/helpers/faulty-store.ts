import { StoreUnavailableError } from '../../src/model/errors.js';
import type { Store } from '../../src/store/store.js';

/**
 * A real Store (SQLite or PostgreSQL) with faults injected at its seam, on
 * command: the calls chosen (by method name and a predicate on their
 * arguments) fail with StoreUnavailableError as an unreachable database
 * makes them fail, either
 * - `lost-reply`: the real call runs and commits, then its answer is lost
 *   (the connection dropped after the commit), or
 * - `refused`: nothing reaches the store (the connection was gone before).
 * The caller sees the same error either way, which is the point: a write
 * retried after it must be right in both cases.
 */

type StorePart = 'jobs' | 'logs' | 'settings' | 'nodes' | 'audit';
type MethodOf<P extends StorePart> = {
  [K in keyof Store[P]]: Store[P][K] extends (...args: never[]) => unknown ? K & string : never;
}[keyof Store[P]];
/** A method of a part of the store, as `part.method` (`jobs.update`, `logs.append`). */
export type StoreMethod = { [P in StorePart]: `${P}.${MethodOf<P>}` }[StorePart];
/** The arguments the named method is called with. */
export type ArgsOf<M extends StoreMethod> = M extends `${infer P extends StorePart}.${infer K}`
  ? K extends keyof Store[P]
    ? Store[P][K] extends (...args: infer A) => unknown
      ? A
      : never
    : never
  : never;

export type FaultMode = 'lost-reply' | 'refused';

export interface Fault<M extends StoreMethod> {
  method: M;
  mode: FaultMode;
  /** Which calls of the method fail (all of them when absent). */
  when?: (...args: ArgsOf<M>) => boolean;
  /** How many calls fail before the fault is spent (1 when absent; Infinity for every matching call). */
  times?: number;
}

/** A call a fault failed. */
export interface FiredFault {
  method: StoreMethod;
  mode: FaultMode;
  args: readonly unknown[];
}

interface Armed {
  method: string;
  mode: FaultMode;
  when: ((...args: never[]) => boolean) | undefined;
  left: number;
}

const PARTS: ReadonlySet<string> = new Set<StorePart>(['jobs', 'logs', 'settings', 'nodes', 'audit']);

export class FaultyStore {
  /** The wrapped store, to hand to the code under test. */
  readonly store: Store;
  /** Every call a fault failed, in order. */
  readonly fired: FiredFault[] = [];
  private armed: Armed[] = [];

  constructor(readonly inner: Store) {
    const parts = new Map<string, object>();
    this.store = new Proxy(inner, {
      get: (target, prop, receiver) => {
        if (typeof prop === 'string' && PARTS.has(prop)) {
          let part = parts.get(prop);
          if (part === undefined) parts.set(prop, (part = this.wrapPart(prop, Reflect.get(target, prop, receiver) as object)));
          return part;
        }
        const value = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  /** Arms a fault; it fails the next matching calls of its method (see Fault.times). */
  inject<M extends StoreMethod>(fault: Fault<M>): void {
    this.armed.push({
      method: fault.method,
      mode: fault.mode,
      when: fault.when as Armed['when'],
      left: fault.times ?? 1,
    });
  }

  /** Disarms every fault not yet spent. */
  clear(): void {
    this.armed = [];
  }

  /** How many calls of the method a fault failed. */
  count(method: StoreMethod): number {
    return this.fired.filter((f) => f.method === method).length;
  }

  private wrapPart(name: string, part: object): object {
    return new Proxy(part, {
      get: (target, prop, receiver) => {
        const value = Reflect.get(target, prop, receiver);
        if (typeof value !== 'function' || typeof prop !== 'string') return value;
        const method = `${name}.${prop}` as StoreMethod;
        return (...args: unknown[]) => {
          const fault = this.take(method, args);
          const call = () => (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          if (fault === null) return call();
          this.fired.push({ method, mode: fault, args });
          const lost = () => {
            throw new StoreUnavailableError('unavailable', `injected fault: the reply to ${method} was lost`);
          };
          return fault === 'refused' ? Promise.resolve().then(lost) : call().then(lost);
        };
      },
    });
  }

  /** The mode of the first armed fault matching this call, spending one of its calls; null when none. */
  private take(method: string, args: unknown[]): FaultMode | null {
    const fault = this.armed.find((f) => f.left > 0 && f.method === method && (f.when === undefined || f.when(...(args as never[]))));
    if (fault === undefined) return null;
    fault.left--;
    return fault.mode;
  }
}
