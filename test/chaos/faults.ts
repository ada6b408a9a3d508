/**
 * The campaign's fault menu. Each fault is switched on against one node (or
 * the database), held for a time drawn from the seed within its bounds, and
 * healed; `inject` resolves once it is healed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Fleet, FleetNode } from '../helpers/fleet.js';

export const FAULT_KINDS = ['cut', 'freeze', 'delay', 'pause', 'kill', 'pg-restart'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface Fault {
  kind: FaultKind;
  /** The node it hits; null for the database. */
  node: string | null;
  holdMs: number;
}

/** How long each kind is held, in leases: [least, most]. Some reach past a lease, so the fleet declares the node lost. */
const HOLD_LEASES: Record<FaultKind, [number, number]> = {
  cut: [0.3, 2],
  freeze: [0.3, 2],
  delay: [1, 3],
  pause: [0.3, 2],
  kill: [0, 1.5],
  'pg-restart': [0.2, 1],
};

/** Every answer from the database comes this much later on a delayed link. */
export const DELAY_MS = 300;

export function drawFault(fleet: Fleet, leaseSeconds: number, rng: () => number): Fault {
  const kind = FAULT_KINDS[Math.floor(rng() * FAULT_KINDS.length)]!;
  const [least, most] = HOLD_LEASES[kind];
  const holdMs = Math.round((least + rng() * (most - least)) * leaseSeconds * 1000);
  const node = kind === 'pg-restart' ? null : fleet.nodes[Math.floor(rng() * fleet.nodes.length)]!.name;
  return { kind, node, holdMs };
}

let killed = 0;

/** Keeps a killed Gantry's own log beside the fleet's (GANTRY_FLEET_LOGS=dir), since its node gets a new process. */
function keepLogOf(n: FleetNode): void {
  const dir = process.env.GANTRY_FLEET_LOGS;
  if (dir) fs.writeFileSync(path.join(dir, `${n.name}.killed-${++killed}.log`), n.gantry.output());
}

/** Switches the fault on, holds it, and heals it. */
export async function inject(fleet: Fleet, f: Fault): Promise<void> {
  const n = f.node === null ? null : fleet.node(f.node);
  switch (f.kind) {
    case 'cut':
    case 'freeze':
    case 'delay': {
      const link = n!.link!;
      if (f.kind === 'cut') await link.cut();
      else if (f.kind === 'freeze') await link.freeze();
      else await link.delay(DELAY_MS);
      await sleep(f.holdMs);
      await link.heal();
      return;
    }
    case 'pause':
      n!.gantry.proc.kill('SIGSTOP');
      await sleep(f.holdMs);
      n!.gantry.proc.kill('SIGCONT');
      return;
    case 'kill':
      await n!.gantry.stop('SIGKILL');
      keepLogOf(n!);
      await sleep(f.holdMs);
      await n!.restart();
      return;
    case 'pg-restart':
      await fleet.pg.stop();
      await sleep(f.holdMs);
      await fleet.pg.start();
      return;
  }
}
