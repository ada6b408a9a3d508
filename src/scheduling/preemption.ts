import type { GpuAllocator } from '../gpu/allocator.js';
import type { GpuRequest } from '../model/job.js';
import type { Quota, Quotas } from './quotas.js';

/** Why a job may be preempted for another: the other has a higher priority, or it runs on GPUs its team borrowed. */
export type PreemptionRule = 'priority' | 'borrowed';
export const PREEMPTION_RULES: readonly PreemptionRule[] = ['priority', 'borrowed'];

/** A job this node runs, as preemption sees it. */
export interface RunningJob {
  jobId: string;
  owner: string;
  priority: number;
  preemptible: boolean;
  /** When it started (ms); the latest started is preempted first, as it loses the least work. */
  startedAt: number;
  /** GPUs it holds (a shared card counts as one). */
  gpus: number;
}

/** The job that waits for GPUs and cannot otherwise start. */
export interface WaitingJob {
  jobId: string;
  owner: string;
  priority: number;
  gpus: GpuRequest;
  model?: string | undefined;
}

export interface Victim {
  jobId: string;
  rule: PreemptionRule;
  reason: string;
}

export interface PreemptionInput {
  waiting: WaitingJob;
  running: readonly RunningJob[];
  /** This node's GPUs as they are held now (it is cloned, never changed). */
  gpus: GpuAllocator;
  quotas: Quotas;
  /** GPUs a team's jobs hold now, fleet-wide. */
  teamGpus: (team: Quota) => number;
}

const gpusOf = (r: GpuRequest) => r.ids?.length ?? r.count ?? 0;

/**
 * The fewest preemptible jobs whose GPUs, freed, let the waiting job start
 * on this node; null when no such set exists. A job may be chosen only
 * when a rule justifies it:
 * - `priority`: it has a lower priority than the waiting job;
 * - `borrowed`: its team holds more GPUs than its nominal `gpus` (it
 *   borrows), the waiting job's team holds less than its own nominal share
 *   and this job fits within it, and the two teams differ. Only as many of
 *   the borrowing team's GPUs as it borrows are taken back.
 * Lower priorities go first, then the latest started. A chosen set is then
 * pruned: a job whose GPUs are not needed after all keeps running.
 * A victim's reason is read by the victim's owner (its attempt, its log, its
 * notice file): it names the waiting job and its priority only when that job
 * is the same owner's, and never the other team's name or share.
 */
export function choosePreemption(p: PreemptionInput): Victim[] | null {
  const { waiting, quotas } = p;
  const waitingTeam = quotas.teamOf(waiting.owner);
  const want = gpusOf(waiting.gpus);
  const withinShare = waitingTeam?.gpus !== undefined && p.teamGpus(waitingTeam) + want <= waitingTeam.gpus ? waitingTeam : undefined;
  // What each borrowing team may give back: what it holds beyond its nominal share.
  const excess = new Map<string, number>();
  const candidates: (RunningJob & { rule: PreemptionRule; reason: string })[] = [];
  for (const r of p.running) {
    if (!r.preemptible || r.gpus === 0) continue;
    if (r.priority < waiting.priority) {
      candidates.push({
        ...r,
        rule: 'priority',
        reason:
          r.owner === waiting.owner
            ? `preempted for job ${waiting.jobId}, of a higher priority (${waiting.priority} > ${r.priority})`
            : `preempted for a job with a better claim: a higher priority than this job's ${r.priority}`,
      });
      continue;
    }
    const team = quotas.teamOf(r.owner);
    if (withinShare === undefined || team === undefined || team === withinShare || team.gpus === undefined) continue;
    const over = excess.get(team.name) ?? p.teamGpus(team) - team.gpus;
    excess.set(team.name, over);
    if (over <= 0) continue;
    candidates.push({
      ...r,
      rule: 'borrowed',
      reason:
        `preempted for a job with a better claim: team "${team.name}" holds more than its ${team.gpus} GPUs (it borrows), ` +
        `and the other job's team is within its share (GANTRY_QUOTAS_FILE)`,
    });
  }
  candidates.sort((a, b) => a.priority - b.priority || b.startedAt - a.startedAt);

  const fits = (set: readonly RunningJob[]) => {
    const what = p.gpus.clone();
    for (const v of set) what.release(v.jobId);
    return what.tryAllocate(waiting.jobId, waiting.gpus, waiting.model) !== null;
  };
  const chosen: typeof candidates = [];
  const given = new Map<string, number>();
  for (const c of candidates) {
    if (c.rule === 'borrowed') {
      const team = quotas.teamOf(c.owner)!;
      const taken = given.get(team.name) ?? 0;
      if (taken + c.gpus > excess.get(team.name)!) continue;
      given.set(team.name, taken + c.gpus);
    }
    chosen.push(c);
    if (fits(chosen)) break;
  }
  if (chosen.length === 0 || !fits(chosen)) return null;
  // Keep running whatever the waiting job does not need after all (the latest chosen are tried last).
  for (let i = 0; i < chosen.length; i++) {
    const without = chosen.filter((_, j) => j !== i);
    if (fits(without)) {
      chosen.splice(i, 1);
      i -= 1;
    }
  }
  return chosen.map(({ jobId, rule, reason }) => ({ jobId, rule, reason }));
}
