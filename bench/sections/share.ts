import { type Allocation, GpuAllocator } from '../../src/gpu/allocator.js';
import type { GpuDevice } from '../../src/gpu/inventory.js';
import type { JobSpec } from '../../src/model/job.js';
import type { WaitInfo } from '../../src/model/queue.js';
import { FairShare } from '../../src/scheduling/fair-share.js';
import { planQueue, type QueueEntry } from '../../src/scheduling/plan.js';
import { choosePreemption } from '../../src/scheduling/preemption.js';
import { QueueState } from '../../src/scheduling/queue-state.js';
import { type Quota, Quotas, TeamLimits } from '../../src/scheduling/quotas.js';
import type { JobRecord } from '../../src/store/store.js';
import { jobRecord, prng } from '../../test/helpers/records.js';
import { round, say } from '../lib/util.js';

const HOUR_MS = 3600_000;
const MINUTE_MS = 60_000;
const HOST_GPUS = 4;
/** Run slots: far more than the GPUs allow, so that only GPUs and quotas decide. */
const MAX_RUNNING = 64;
export const TEAMS = ['a', 'b'] as const;
export type Team = (typeof TEAMS)[number];

/** A stretch of the day and the teams that submit jobs during it. */
export interface SharePhase {
  name: string;
  fromH: number;
  toH: number;
  busy: readonly Team[];
}

export interface ShareSimConfig {
  seed: number;
  phases: readonly SharePhase[];
  /** Jobs each team keeps submitted and not ended while busy: one ends, it submits another. */
  outstanding: number;
  /** Of its jobs, the fraction that ask for 2 GPUs (the others ask for 1). */
  twoGpuFraction: number;
  /** Job lengths, uniform between these (minutes); timeoutSeconds is the length rounded up to the minute. */
  minMinutes: number;
  maxMinutes: number;
  /** Fair share's half-life (GANTRY_FAIR_SHARE_HALF_LIFE_SECONDS). */
  halfLifeSeconds: number;
  /** How long a preempted job takes to stop after it is told (its GPUs stay held meanwhile), in seconds. */
  stopSeconds: number;
}

export const DAY: ShareSimConfig = {
  seed: 20261202,
  phases: [
    { name: '1 both busy', fromH: 0, toH: 8, busy: ['a', 'b'] },
    { name: '2 team b idle', fromH: 8, toH: 14, busy: ['a'] },
    { name: '3 both busy', fromH: 14, toH: 24, busy: ['a', 'b'] },
  ],
  outstanding: 6,
  twoGpuFraction: 0.2,
  minMinutes: 10,
  maxMinutes: 90,
  halfLifeSeconds: 2 * 3600,
  stopSeconds: 30,
};

export interface PhaseResult {
  name: string;
  fromH: number;
  toH: number;
  bothBusy: boolean;
  gpuHours: Record<Team, number>;
  /** Each team's part of the GPU-hours used in the phase. */
  share: Record<Team, number>;
  /** GPU-hours used over the host's GPU-hours in the phase. */
  utilisation: number;
  /** Team a's GPU-hours over the host's GPU-hours in the phase. */
  hostShareA: number;
  /** Team a's GPU-hours over those team b left it (the host's less b's): what a made of b's idle share. */
  leftUseA: number;
  /**
   * GPU-hours left idle while jobs waited: with every waiting job refused by
   * its team's quota, and with a job holding the GPU reservation (free cards
   * kept for it, or too few for it).
   */
  idleGpuHours: { quota: number; reserved: number };
}

export interface ShareSimResult {
  jobs: number;
  passes: number;
  preemptions: number;
  /** When each preemption was decided (hours into the day). */
  preemptedAtH: number[];
  phases: PhaseResult[];
  /** Longest a job waited queued before a start (from its submit, or its requeue after a preemption), in minutes, by GPUs asked. */
  maxWaitMinutes: { gpus1: number; gpus2: number };
  /** When the last job ended (hours; the queue drains after the last submit). */
  drainedAtH: number;
  /** Jobs still queued or running when nothing was left to happen: each would wait forever. */
  unfinished: number;
  /** The most GPUs held at once, on the host and by one team. */
  maxHeld: number;
  maxTeamHeld: Record<Team, number>;
  /** Broken invariants (never more GPUs held than the host has, nor by a team than its limits; preemptions by the rule). */
  violations: string[];
  wallMs: number;
}

/** A job held by the simulated node, as the scheduler keeps it. */
interface Running {
  record: JobRecord;
  team: Team;
  at: number;
  endsBy: number;
  gpus: number;
}

/** What happens at a simulated instant: a team becomes busy, a job is submitted, ends, or has stopped after a preemption. */
type Happening = { at: number } & (
  | { kind: 'busy'; team: Team }
  | { kind: 'submit'; record: JobRecord }
  | { kind: 'end' | 'stopped'; id: string; attempt: number }
);
/** Happenings at the same instant are taken in the order they were scheduled. */
type SimEvent = Happening & { seq: number };

const iso = (ms: number) => new Date(ms).toISOString();

function newRecord(seq: number, owner: string, gpus: number, timeoutSeconds: number, createdAt: number): JobRecord {
  return jobRecord(seq, {
    owner,
    spec: { image: 'local/busybox', command: ['true'], gpus: { count: gpus }, timeoutSeconds, preemptible: true } as JobSpec,
    createdAt: iso(createdAt),
  });
}

/**
 * Two teams of two owners each, equal shares (2 GPUs, 2 more they may
 * borrow) on one 4-GPU host, over simulated time: the scheduler's pass
 * (planQueue over QueueState's fair-share order, TeamLimits, GpuAllocator)
 * and its preemption (choosePreemption for the reservation's holder), driven
 * as src/runner/scheduler.ts drives them, a pass after every submit and
 * every end. Every job is preemptible, so only the rule decides which give
 * way. After the last submit the queue drains, so every job's wait is known.
 */
export function simulateShare(cfg: ShareSimConfig): ShareSimResult {
  const t0 = performance.now();
  const rand = prng(cfg.seed);
  const teams: Quota[] = TEAMS.map((t) => ({ name: t, owners: [`${t}1`, `${t}2`], gpus: 2, borrowGpus: 2 }));
  const quotas = new Quotas(teams);
  const queue = new QueueState(new FairShare(cfg.halfLifeSeconds, quotas));
  const devices: GpuDevice[] = Array.from({ length: HOST_GPUS }, (_, i) => ({
    index: i,
    uuid: `GPU-sim-${i}`,
    name: 'Sim GPU',
    memoryMiB: 81920,
  }));
  const gpus = new GpuAllocator(devices);
  const teamOf = (owner: string) => quotas.teamOf(owner)!.name as Team;

  // Start the simulated clock at a fixed instant, so that every timestamp is of the simulated day.
  const origin = Date.parse('2026-01-01T00:00:00Z');
  const events: SimEvent[] = [];
  let eventSeq = 0;
  const push = (e: Happening) => {
    const ev: SimEvent = { ...e, seq: eventSeq++ };
    let lo = 0;
    let hi = events.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const m = events[mid]!;
      if (m.at < ev.at || (m.at === ev.at && m.seq < ev.seq)) lo = mid + 1;
      else hi = mid;
    }
    events.splice(lo, 0, ev);
  };

  // The workload: while busy, a team keeps `outstanding` jobs submitted and not ended, lengths and sizes drawn from the seed.
  const lengthMs = new Map<string, number>();
  const outstanding: Record<Team, number> = { a: 0, b: 0 };
  const busyAt = (team: Team, at: number) =>
    cfg.phases.some((p) => p.busy.includes(team) && at >= origin + p.fromH * HOUR_MS && at < origin + p.toH * HOUR_MS);
  let jobSeq = 0;
  const submit = (team: Team, at: number) => {
    const minutes = cfg.minMinutes + rand() * (cfg.maxMinutes - cfg.minMinutes);
    const size = rand() < cfg.twoGpuFraction ? 2 : 1;
    const owner = `${team}${rand() < 0.5 ? 1 : 2}`;
    jobSeq += 1;
    const record = newRecord(jobSeq, owner, size, Math.ceil(minutes) * 60, at);
    lengthMs.set(record.id, Math.round(minutes * MINUTE_MS));
    outstanding[team] += 1;
    push({ at, kind: 'submit', record });
  };
  for (const p of cfg.phases) for (const team of p.busy) push({ at: origin + p.fromH * HOUR_MS, kind: 'busy', team });

  const running = new Map<string, Running>();
  const stopping = new Set<string>();
  const preempting = new Map<string, Set<string>>();
  const queuedSince = new Map<string, number>();
  const violations: string[] = [];
  const endH = Math.max(...cfg.phases.map((p) => p.toH));
  const used = cfg.phases.map(() => ({ a: 0, b: 0 }) as Record<Team, number>);
  const idle = cfg.phases.map(() => ({ quota: 0, reserved: 0 }));
  // Free GPUs since the last pass, and why the jobs that waited then did.
  let idleSince: { at: number; free: number; why: 'quota' | 'reserved' } | null = null;
  const maxWait = { gpus1: 0, gpus2: 0 };
  const maxTeamHeld: Record<Team, number> = { a: 0, b: 0 };
  let maxHeld = 0;
  let passes = 0;
  const preemptedAtH: number[] = [];
  let lastEnd = origin;

  const held = (team?: Team) => [...running.values()].filter((r) => team === undefined || r.team === team).reduce((n, r) => n + r.gpus, 0);
  const entry = (r: JobRecord): QueueEntry => ({ id: r.id, owner: r.owner, gpus: r.spec.gpus, timeoutSeconds: r.spec.timeoutSeconds! });

  const start = (queued: JobRecord, alloc: Allocation, now: number) => {
    const record: JobRecord = { ...queued, state: 'running', node: 'sim', gpus: alloc.uuids, startedAt: iso(now) };
    queue.observe(record);
    running.set(record.id, {
      record,
      team: teamOf(record.owner),
      at: now,
      endsBy: now + record.spec.timeoutSeconds! * 1000,
      gpus: alloc.uuids.length,
    });
    const waited = (now - queuedSince.get(record.id)!) / MINUTE_MS;
    const key = alloc.uuids.length === 2 ? 'gpus2' : 'gpus1';
    maxWait[key] = Math.max(maxWait[key], waited);
    push({ at: now + lengthMs.get(record.id)!, kind: 'end', id: record.id, attempt: record.attempt });
  };

  // Adds the GPU-hours held from `from` to `to` to each phase they overlap.
  const overlap = (from: number, to: number, add: (i: number, hours: number) => void) => {
    cfg.phases.forEach((p, i) => {
      const lo = Math.max(from, origin + p.fromH * HOUR_MS);
      const hi = Math.min(to, origin + p.toH * HOUR_MS);
      if (hi > lo) add(i, (hi - lo) / HOUR_MS);
    });
  };
  const account = (team: Team, gpuCount: number, from: number, to: number) =>
    overlap(from, to, (i, hours) => {
      used[i]![team] += gpuCount * hours;
    });

  const finish = (id: string, now: number, preempted: boolean) => {
    const r = running.get(id)!;
    running.delete(id);
    stopping.delete(id);
    for (const [waiter, victims] of preempting) {
      victims.delete(id);
      if (victims.size === 0) preempting.delete(waiter);
    }
    gpus.release(id);
    account(r.team, r.gpus, r.at, now);
    lastEnd = Math.max(lastEnd, now);
    const rec = r.record;
    if (!preempted) {
      queue.observe({ ...rec, state: 'succeeded', finishedAt: iso(now), exitCode: 0 });
      outstanding[r.team] -= 1;
      if (busyAt(r.team, now)) submit(r.team, now);
      return;
    }
    // A preemption costs the job no attempt: it is queued again at once, in its old place.
    queue.observe({
      ...rec,
      state: 'queued',
      node: null,
      gpus: [],
      startedAt: null,
      attempt: rec.attempt + 1,
      attempts: [
        ...rec.attempts,
        {
          attempt: rec.attempt,
          node: 'sim',
          gpus: [...rec.gpus],
          startedAt: rec.startedAt,
          outcome: 'failed',
          cause: 'preempted',
          retried: true,
          reason: 'preempted',
          exitCode: null,
          finishedAt: iso(now),
          logEnd: 0,
        },
      ],
    });
    queuedSince.set(id, now);
  };

  const preemptFor = (waiting: Map<string, WaitInfo>, now: number) => {
    const holder = [...waiting].find(([, w]) => w.code === 'gpus');
    if (holder === undefined) return;
    const [id] = holder;
    if (preempting.has(id)) return;
    const record = queue.all.get(id);
    if (record?.spec.gpus === undefined) return;
    const candidates = [...running.values()]
      .filter((r) => !stopping.has(r.record.id))
      .map((r) => ({
        jobId: r.record.id,
        owner: r.record.owner,
        priority: r.record.priority,
        preemptible: r.record.spec.preemptible === true,
        startedAt: r.at,
        gpus: gpus.allocationOf(r.record.id)?.uuids.length ?? 0,
      }));
    const victims = choosePreemption({
      waiting: { jobId: id, owner: record.owner, priority: record.priority, gpus: record.spec.gpus },
      running: candidates,
      gpus,
      quotas,
      teamGpus: (team) => queue.activeOf(team.owners).gpus,
    });
    if (victims === null) return;
    const waitingTeam = teamOf(record.owner);
    const want = record.spec.gpus.count ?? 0;
    preempting.set(id, new Set(victims.map((v) => v.jobId)));
    for (const v of victims) {
      const r = running.get(v.jobId)!;
      const at = `at ${((now - origin) / HOUR_MS).toFixed(3)} h`;
      if (!r.record.spec.preemptible) violations.push(`${at}: job ${v.jobId} preempted but not preemptible`);
      if (v.rule !== 'borrowed') violations.push(`${at}: job ${v.jobId} preempted by rule ${v.rule}`);
      if (r.team === waitingTeam) violations.push(`${at}: job ${v.jobId} preempted for job ${id} of its own team`);
      if (held(r.team) <= 2)
        violations.push(`${at}: job ${v.jobId} preempted while its team ${r.team} held ${held(r.team)} GPUs, not borrowing`);
      if (held(waitingTeam) + want > 2)
        violations.push(`${at}: job ${v.jobId} preempted for job ${id}, whose team ${waitingTeam} is not within its share`);
      stopping.add(v.jobId);
      preemptedAtH.push(round((now - origin) / HOUR_MS, 3));
      push({ at: now + cfg.stopSeconds * 1000, kind: 'stopped', id: v.jobId, attempt: r.record.attempt });
    }
  };

  // One pass, as Scheduler.plan() makes it, at the simulated time.
  const pass = (now: number) => {
    passes += 1;
    if (idleSince !== null) {
      const { free, why } = idleSince;
      overlap(idleSince.at, now, (i, hours) => {
        idle[i]![why] += free * hours;
      });
    }
    const limits = new TeamLimits(quotas, queue);
    const plan = planQueue({
      queue: function* (skip) {
        for (const r of queue.runnableInOrder(skip, queue.order(now))) if (!running.has(r.id)) yield entry(r);
      },
      limits,
      gpus,
      freeSlots: MAX_RUNNING - running.size,
      maxRunning: MAX_RUNNING,
      running: [...running.values()].map((r) => ({ jobId: r.record.id, endsBy: r.endsBy })),
      now,
    });
    const waiting = new Map<string, WaitInfo>();
    for (const d of plan.decisions) {
      if (d.action === 'wait') waiting.set(d.id, d.wait);
      else start(queue.all.get(d.id)!, d.alloc!, now);
    }
    preemptFor(waiting, now);
    const free = HOST_GPUS - held();
    const reserved = [...waiting.values()].some((w) => w.code === 'gpus');
    idleSince = free > 0 && waiting.size > 0 ? { at: now, free, why: reserved ? 'reserved' : 'quota' } : null;
    const total = held();
    maxHeld = Math.max(maxHeld, total);
    const at = `at ${((now - origin) / HOUR_MS).toFixed(3)} h`;
    if (total > HOST_GPUS) violations.push(`${at}: ${total} GPUs held on a ${HOST_GPUS}-GPU host`);
    for (const team of TEAMS) {
      const h = held(team);
      maxTeamHeld[team] = Math.max(maxTeamHeld[team], h);
      if (h > 4) violations.push(`${at}: team ${team} holds ${h} GPUs, over its gpus + borrowGpus`);
    }
  };

  for (let e = events.shift(); e !== undefined; e = events.shift()) {
    if (e.kind === 'busy') {
      while (outstanding[e.team] < cfg.outstanding) submit(e.team, e.at);
      continue;
    }
    if (e.kind === 'submit') {
      queuedSince.set(e.record.id, e.at);
      queue.observe(e.record);
    } else {
      // A job that ended on its own while being stopped has nothing left to stop.
      const r = running.get(e.id);
      if (r === undefined || r.record.attempt !== e.attempt) continue;
      finish(e.id, e.at, e.kind === 'stopped');
    }
    pass(e.at);
  }

  const phases = cfg.phases.map((p, i): PhaseResult => {
    const u = used[i]!;
    const total = u.a + u.b;
    const host = HOST_GPUS * (p.toH - p.fromH);
    return {
      name: p.name,
      fromH: p.fromH,
      toH: p.toH,
      bothBusy: p.busy.length === TEAMS.length,
      gpuHours: { a: round(u.a, 2), b: round(u.b, 2) },
      share: { a: round(total > 0 ? u.a / total : 0, 4), b: round(total > 0 ? u.b / total : 0, 4) },
      utilisation: round(total / host, 4),
      hostShareA: round(u.a / host, 4),
      idleGpuHours: { quota: round(idle[i]!.quota, 2), reserved: round(idle[i]!.reserved, 2) },
      leftUseA: round(u.a / (host - u.b), 4),
    };
  });
  return {
    jobs: jobSeq,
    passes,
    preemptions: preemptedAtH.length,
    preemptedAtH,
    phases,
    maxWaitMinutes: { gpus1: round(maxWait.gpus1, 1), gpus2: round(maxWait.gpus2, 1) },
    drainedAtH: round(Math.max(endH, (lastEnd - origin) / HOUR_MS), 2),
    unfinished: [...queue.all.inOrder()].length + running.size,
    maxHeld,
    maxTeamHeld,
    violations,
    wallMs: round(performance.now() - t0, 1),
  };
}

/** The day's simulation, as the bench runs it. */
export function benchShare(cfg: ShareSimConfig = DAY): ShareSimResult {
  say(`share: two teams, ${HOST_GPUS} GPUs, ${Math.max(...cfg.phases.map((p) => p.toH))} simulated hours (seed ${cfg.seed})`);
  return simulateShare(cfg);
}
