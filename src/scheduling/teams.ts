import type { FairShareUnit, Team, TeamList } from '../model/teams.js';
import type { FairShare } from './fair-share.js';
import type { QueueState } from './queue-state.js';
import type { Quotas } from './quotas.js';

/** What the teams' use is read from: the quotas, and the node's queue state (its fair share included). */
export interface TeamSources {
  quotas: Quotas;
  queue: Pick<QueueState, 'queuedOf' | 'activeOf'> & { fairShare: FairShare };
  halfLifeSeconds: number;
}

/**
 * Every team's limits and use, and every fair-share unit's use, now: read
 * live, so a reload of the quotas file shows at once (a team removed is
 * gone, its owners count on their own).
 */
export function teamList({ quotas, queue, halfLifeSeconds }: TeamSources, now = Date.now()): TeamList {
  const fs = queue.fairShare;
  const usage = fs.usage(now);
  const teams = quotas.teams();
  const items = teams.map((t): Team => {
    const active = queue.activeOf(t.owners);
    const share = fs.shareOf(t.owners[0]!);
    const gpuSeconds = usage.get(`team:${t.name}`) ?? 0;
    return {
      name: t.name,
      owners: [...t.owners],
      limits: {
        maxQueued: t.maxQueued ?? null,
        maxRunning: t.maxRunning ?? null,
        gpus: t.gpus ?? null,
        borrowGpus: t.borrowGpus ?? null,
        share,
      },
      use: {
        queuedJobs: queue.queuedOf(t.owners),
        runningJobs: active.jobs,
        gpus: active.gpus,
        borrowedGpus: t.gpus === undefined ? 0 : Math.max(0, active.gpus - t.gpus),
      },
      fairShare: { gpuSeconds, rank: gpuSeconds / share },
    };
  });
  const shareOfUnit = (unit: string) => {
    const team = unit.startsWith('team:') ? teams.find((t) => `team:${t.name}` === unit) : undefined;
    return team ? fs.shareOf(team.owners[0]!) : 1;
  };
  const units = [...usage]
    .filter(([, gpuSeconds]) => gpuSeconds > 0)
    .map(([unit, gpuSeconds]): FairShareUnit => {
      const share = shareOfUnit(unit);
      return { unit, gpuSeconds, share, rank: gpuSeconds / share };
    })
    .sort((a, b) => b.gpuSeconds - a.gpuSeconds || a.unit.localeCompare(b.unit));
  return { items, fairShare: { halfLifeSeconds, units } };
}

/** The part of the list a caller may read: an admin all of it; anyone else its own team and its own fair-share unit. */
export function teamListFor(list: TeamList, owner: string, isAdmin: boolean, unitOf: (owner: string) => string): TeamList {
  if (isAdmin) return list;
  const unit = unitOf(owner);
  return {
    items: list.items.filter((t) => t.owners.includes(owner)),
    fairShare: { ...list.fairShare, units: list.fairShare.units.filter((u) => u.unit === unit) },
  };
}
