import fs from 'node:fs';
import { procCpuSeconds } from './gantry.js';

/** Pids whose /proc/PID/comm is one of `names`. */
function pidsNamed(names: string[]): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (names.includes(fs.readFileSync(`/proc/${d}/comm`, 'utf8').trim())) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

function machine(): { busy: number; total: number; steal: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
  const busy = user + nice + system + irq + softirq;
  return { busy: busy / 100, total: (busy + idle + iowait + steal) / 100, steal: steal / 100 };
}

const sum = (pids: number[]) => pids.reduce((a, p) => a + (safe(() => procCpuSeconds(p)) ?? 0), 0);
function safe<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds spent during a step, by whom: Gantry, the engine (dockerd and
 * containerd; a container's shim and processes fall in "rest"), this bench
 * process, and the rest of the machine (the job itself, and other users of a
 * shared machine). Used to tell where the time of a step went.
 */
export class CpuMeter {
  private readonly engine = pidsNamed(['dockerd', 'containerd']);
  private readonly start: { gantry: number; engine: number; bench: number; m: ReturnType<typeof machine> };
  constructor(private readonly gantryPid: number | null) {
    this.start = this.read();
  }
  private read() {
    const u = process.cpuUsage();
    return {
      gantry: this.gantryPid ? (safe(() => procCpuSeconds(this.gantryPid!)) ?? 0) : 0,
      engine: sum(this.engine),
      bench: (u.user + u.system) / 1e6,
      m: machine(),
    };
  }
  stop(): { gantry: number; engine: number; bench: number; rest: number; machineBusy: number; machineCapacity: number; steal: number } {
    const e = this.read();
    const r = (x: number) => Math.round(x * 100) / 100;
    const gantry = e.gantry - this.start.gantry;
    const engine = e.engine - this.start.engine;
    const bench = e.bench - this.start.bench;
    const busy = e.m.busy - this.start.m.busy;
    return {
      gantry: r(gantry),
      engine: r(engine),
      bench: r(bench),
      rest: r(Math.max(0, busy - gantry - engine - bench)),
      machineBusy: r(busy),
      machineCapacity: r(e.m.total - this.start.m.total),
      steal: r(e.m.steal - this.start.m.steal),
    };
  }
}
