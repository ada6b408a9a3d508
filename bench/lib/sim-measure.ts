/**
 * Marks taken around a window of the simulation (the database's counters,
 * the notifications heard, the CPU of PostgreSQL, of the node hosts, of the
 * driver and of the whole machine) and what changed between two of them.
 */
import fs from 'node:fs';
import type pg from 'pg';
import type { TestPostgres } from '../../test/helpers/postgres.js';
import { pgCpuSeconds } from '../sections/fleet.js';
import {
  type ConnectionSample,
  connections,
  type DbCounters,
  diffCounters,
  type NotificationCounter,
  readCounters,
} from './pg-observer.js';
import { type Host, hostsCpuSeconds } from './sim-hosts.js';
import { mean, median, now, percentile, round, sleep } from './util.js';

const driverCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** CPU seconds the whole machine has been busy (every process, every core) since boot. */
function machineBusy(): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]!) / 100;
}

export interface Mark {
  t: number;
  counters: DbCounters;
  notifications: ReturnType<NotificationCounter['snapshot']>;
  pgCpu: number;
  hostCpu: number;
  driverCpu: number;
  machine: number;
}

export async function mark(obs: pg.Client, db: TestPostgres, hosts: Host[], notes: NotificationCounter): Promise<Mark> {
  return {
    t: now(),
    counters: await readCounters(obs),
    notifications: notes.snapshot(),
    pgCpu: pgCpuSeconds(db),
    hostCpu: hostsCpuSeconds(hosts),
    driverCpu: driverCpu(),
    machine: machineBusy(),
  };
}

export function between(a: Mark, b: Mark) {
  const kinds: Record<string, number> = {};
  for (const [k, v] of Object.entries(b.notifications.byKind)) kinds[k] = v - (a.notifications.byKind[k] ?? 0);
  return {
    seconds: (b.t - a.t) / 1000,
    db: diffCounters(a.counters, b.counters),
    notifications: b.notifications.total - a.notifications.total,
    notificationsByKind: kinds,
    pgCpu: b.pgCpu - a.pgCpu,
    hostCpu: b.hostCpu - a.hostCpu,
    driverCpu: b.driverCpu - a.driverCpu,
    machine: b.machine - a.machine,
  };
}

/** Samples the fleet's connections every second until stopped. */
export function sampleConnections(obs: pg.Client): { stop(): Promise<ConnectionSample[]> } {
  const samples: ConnectionSample[] = [];
  let on = true;
  const loop = (async () => {
    while (on) {
      samples.push(await connections(obs));
      await sleep(1000);
    }
  })();
  return {
    async stop() {
      on = false;
      await loop;
      return samples;
    },
  };
}

export const connSummary = (s: ConnectionSample[]) => ({
  max: Math.max(...s.map((x) => x.total)),
  mean: round(mean(s.map((x) => x.total)), 1),
  listening: Math.max(...s.map((x) => x.listening)),
  listeningMean: round(mean(s.map((x) => x.listening)), 1),
  maxActive: Math.max(...s.map((x) => x.active)),
});

export function stats(xs: number[]) {
  return { n: xs.length, p50: round(median(xs), 1), p99: round(percentile(xs, 99), 1), max: round(Math.max(...xs), 1) };
}
