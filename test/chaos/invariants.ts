/**
 * What the fleet must keep whatever the faults did, checked once they are
 * healed and the fleet has had a bounded time to converge. Each check
 * returns the violations it found, as sentences naming the job or node.
 */
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Job } from '../../src/model/job.js';
import type { Node } from '../../src/model/node.js';
import { isTerminal } from '../../src/model/states.js';
import type { Fleet } from '../helpers/fleet.js';
import { callNode, type TrackedJob, tickFile, urls } from './jobs.js';

/** A fault as it happened: switched on at `from`, healed at `to` (ms since the epoch), of a kind, on a node (null: the database). */
export interface FaultWindow {
  from: number;
  to: number;
  kind?: string;
  node?: string | null;
}

/** Faults during which a node's Gantry process does not run at all (it cannot stop anything then). */
const PROCESS_DOWN = new Set(['pause', 'kill']);

/**
 * How long after its process runs again a node may still be stopping a run
 * the fleet settled: the self-fence looks every half second, then SIGTERM,
 * the stop grace, SIGKILL; plus a tick's spacing (0.25 s) and slack.
 */
const restartSlackMs = (stopGraceSeconds: number) => 1500 + stopGraceSeconds * 1000;

export interface Bounds {
  leaseSeconds: number;
  stopGraceSeconds: number;
}

/** The job through a node; undefined when that node did not answer 200. */
async function jobVia(url: string, id: string): Promise<Job | undefined> {
  const r = await callNode<Job>(url, 'GET', `/v1/jobs/${id}`);
  return r?.status === 200 ? r.body : undefined;
}

/**
 * Reads every job once, through a node chosen by its index, and keeps each
 * job's first terminal view: a later view with another state, end time or
 * attempt is a job that ended twice (or left its end). Returns how many jobs
 * are not yet seen terminal.
 */
export async function pollEnds(fleet: Fleet, jobs: TrackedJob[]): Promise<number> {
  const nodes = urls(fleet);
  // All at once: a paused node makes its share of the reads wait out their timeout together.
  const views = await Promise.all(jobs.map((tj, i) => jobVia(nodes[i % nodes.length]!, tj.id)));
  let open = 0;
  for (const [i, tj] of jobs.entries()) {
    const j = views[i];
    if (j === undefined) {
      if (tj.firstEnd === null) open++;
      continue;
    }
    tj.last = j;
    if (!isTerminal(j.state)) {
      if (tj.firstEnd !== null) tj.endChanged ??= `was ${tj.firstEnd.state}, then ${j.state} (attempt ${j.attempt})`;
      open++;
      continue;
    }
    const end = { state: j.state, finishedAt: j.finishedAt, attempt: j.attempt };
    if (tj.firstEnd === null) tj.firstEnd = end;
    else if (JSON.stringify(end) !== JSON.stringify(tj.firstEnd))
      tj.endChanged ??= `ended ${JSON.stringify(tj.firstEnd)}, later ${JSON.stringify(end)}`;
  }
  return open;
}

/** Polls until every job has ended or `ms` has passed; returns the time it took, or null when some did not end. */
export async function awaitEnds(fleet: Fleet, jobs: TrackedJob[], ms: number): Promise<number | null> {
  const start = Date.now();
  while (Date.now() - start < ms) {
    if ((await pollEnds(fleet, jobs)) === 0) return Date.now() - start;
    await sleep(500);
  }
  return null;
}

/** The first time after `at` at which no fault is on, pushed past every fault that starts within `settleMs` of the last such time. */
function quietAfter(at: number, faults: FaultWindow[], settleMs: number): number {
  let t = at;
  for (const f of [...faults].sort((a, b) => a.from - b.from)) if (f.from <= t + settleMs && f.to > t) t = f.to;
  return t;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Checks every invariant on the jobs and the fleet as they are now; the violations found. */
export async function checkJobs(fleet: Fleet, jobs: TrackedJob[], faults: FaultWindow[], b: Bounds): Promise<string[]> {
  const out: string[] = [];
  const nodes = urls(fleet);
  const overlapBoundMs = (b.leaseSeconds + b.stopGraceSeconds) * 1000;
  const cancelSettleMs = (2 * b.leaseSeconds + b.stopGraceSeconds) * 1000;
  for (const tj of jobs) {
    const views = await Promise.all(nodes.map((u) => jobVia(u, tj.id)));
    const j = views[0];
    if (j === undefined) {
      out.push(`job ${tj.id}: no answer to GET through the first node`);
      continue;
    }
    // (1) Every job answered 201 ends exactly once in a terminal state: it
    // ended within the convergence bound, never changed its end after, every
    // node tells the same end, and only its last attempt was not retried.
    if (!isTerminal(j.state)) out.push(`job ${tj.id}: still ${j.state} (attempt ${j.attempt}, node ${j.node}) after the convergence bound`);
    if (tj.endChanged) out.push(`job ${tj.id}: its end changed: ${tj.endChanged}`);
    for (const [i, v] of views.entries()) {
      if (v && (v.state !== j.state || v.finishedAt !== j.finishedAt || v.attempt !== j.attempt)) {
        out.push(
          `job ${tj.id}: node ${fleet.nodes[i]!.name} says ${v.state}/${v.attempt}, node ${fleet.nodes[0]!.name} ${j.state}/${j.attempt}`,
        );
      }
    }
    const retried = j.attempts.filter((a) => a.retried).map((a) => a.attempt);
    const expected = Array.from({ length: j.attempt - 1 }, (_, i) => i + 1);
    if (JSON.stringify(retried) !== JSON.stringify(expected)) out.push(`job ${tj.id}: retried attempts ${retried} at attempt ${j.attempt}`);
    const finals = j.attempts.filter((a) => !a.retried);
    if (finals.length > 1 || (finals[0] && finals[0].attempt !== j.attempt)) {
      out.push(`job ${tj.id}: attempts that ended it: ${finals.map((a) => `${a.attempt} ${a.outcome}`).join(', ')}`);
    }
    // (2) A job that succeeded has every line its last attempt printed, once each, in order.
    if (j.state === 'succeeded') {
      const r = await callNode<string>(nodes[1 % nodes.length]!, 'GET', `/v1/jobs/${tj.id}/logs?attempt=${j.attempt}`);
      const lines = (r?.text ?? '').split('\n').filter((l) => l !== '' && !l.startsWith('[gantry]'));
      const want = Array.from({ length: tj.plan.lines }, (_, i) => `line-${i + 1}`);
      if (JSON.stringify(lines) !== JSON.stringify(want)) {
        out.push(`job ${tj.id}: attempt ${j.attempt} succeeded with lines [${lines.join(' ')}], printed [${want.join(' ')}]`);
      }
    }
    // (3) No two attempts of a job overlap for longer than a lease plus the
    // stop grace: the documented window in which a cut-off node's copy runs
    // on after the fleet settled it, by the attempts' own start and end.
    const windows = j.attempts
      .filter((a) => a.startedAt)
      .map((a) => ({ n: a.attempt, s: Date.parse(a.startedAt!), f: Date.parse(a.finishedAt) }));
    if (j.startedAt && !j.attempts.some((a) => a.attempt === j.attempt)) {
      windows.push({ n: j.attempt, s: Date.parse(j.startedAt), f: j.finishedAt ? Date.parse(j.finishedAt) : Date.now() });
    }
    for (const x of windows) {
      for (const y of windows) {
        const overlap = Math.min(x.f, y.f) - Math.max(x.s, y.s);
        if (x.n < y.n && overlap > overlapBoundMs) out.push(`job ${tj.id}: attempts ${x.n} and ${y.n} overlap by ${overlap} ms`);
      }
    }
    // (4) A cancel answered 202 while the job had not ended ends it
    // cancelled within two leases and the stop grace of the faults around it
    // healing. The one exception the API states ("unless it ends otherwise
    // first"): its container exited on its own before the node running it
    // learned of the cancel, which that node does within a lease of the
    // faults healing (a notification, or at the latest its next reconcile).
    // Either way no attempt is retried once the cancel is known.
    const cancel = tj.cancels.find((c) => !isTerminal(c.stateInAnswer));
    if (cancel) {
      const quiet = quietAfter(cancel.at, faults, cancelSettleMs);
      const knownBy = quiet + b.leaseSeconds * 1000;
      const ended = j.finishedAt ? Date.parse(j.finishedAt) : Number.POSITIVE_INFINITY;
      const when = `cancel answered ${cancel.status} while ${cancel.stateInAnswer} at ${iso(cancel.at)}, faults around it healed by ${iso(quiet)}`;
      if (j.state !== 'cancelled' && ended > knownBy) out.push(`job ${tj.id}: ${when}, but it ended ${j.state} at ${j.finishedAt}`);
      if (j.state === 'cancelled' && ended > quiet + cancelSettleMs)
        out.push(`job ${tj.id}: ${when}, but it ended cancelled only at ${j.finishedAt}`);
      for (const a of j.attempts) {
        if (a.retried && Date.parse(a.finishedAt) > knownBy)
          out.push(`job ${tj.id}: ${when}, yet attempt ${a.attempt} was retried at ${a.finishedAt}`);
      }
    }
  }
  return out;
}

/**
 * (3b) Two attempts of a job really run at once (by the ticks each writes
 * as it prints, which no fence or lost reply can alter) only in the one
 * documented case: the earlier attempt's node was declared lost
 * (`node_lost`) while its Gantry process was not running (paused or
 * killed: a frozen process cannot fence itself), and only until that
 * process ran again and stopped it. A node merely cut off stops its run
 * itself before the fleet can declare it lost (self-fencing), so any other
 * overlap is a violation. Ticks are host uptime; `uptimeOffsetMs` turns them
 * into epoch ms to compare with the fault windows. Returns the violations
 * and the longest overlap seen, in ms.
 */
export function checkRealOverlaps(
  tickDir: string,
  jobs: TrackedJob[],
  o: { windows: readonly FaultWindow[]; uptimeOffsetMs: number; stopGraceSeconds: number } = {
    windows: [],
    uptimeOffsetMs: 0,
    stopGraceSeconds: 0,
  },
): { violations: string[]; maxMs: number } {
  const violations: string[] = [];
  let maxMs = 0;
  for (const tj of jobs) {
    const attempts = tj.last?.attempts ?? [];
    const ran: { n: number; s: number; f: number }[] = [];
    for (let n = 1; n <= (tj.last?.attempt ?? 1); n++) {
      const file = path.join(tickDir, tickFile(tj.plan, n));
      if (!fs.existsSync(file)) continue;
      const ticks = fs
        .readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((x) => Number(x) * 1000);
      if (ticks.length) ran.push({ n, s: Math.min(...ticks), f: Math.max(...ticks) });
    }
    for (const x of ran) {
      for (const y of ran) {
        const overlap = Math.round(Math.min(x.f, y.f) - Math.max(x.s, y.s));
        if (x.n >= y.n || overlap < 0) continue;
        maxMs = Math.max(maxMs, overlap);
        const earlier = attempts.find((a) => a.attempt === x.n);
        const cause = earlier?.cause;
        // The overlap, in epoch ms, must lie within a time the earlier node's process was down (plus its stop once back).
        const from = Math.max(x.s, y.s) + o.uptimeOffsetMs;
        const to = Math.min(x.f, y.f) + o.uptimeOffsetMs;
        const excused =
          cause === 'node_lost' &&
          o.windows.some(
            (w) =>
              w.kind !== undefined &&
              PROCESS_DOWN.has(w.kind) &&
              w.node === earlier?.node &&
              w.from <= from &&
              to <= w.to + restartSlackMs(o.stopGraceSeconds),
          );
        if (!excused)
          violations.push(`job ${tj.id}: attempt ${x.n} (${cause}, on ${earlier?.node}) still ran ${overlap} ms into attempt ${y.n}`);
      }
    }
  }
  return { violations, maxMs };
}

/** (5) and (6): no container of any job left on any engine, and no GPU held on any node; waits up to `ms` for both. */
export async function checkLeftovers(fleet: Fleet, ms: number): Promise<string[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const out: string[] = [];
    for (const n of fleet.nodes) {
      const left = await n.dockerd.docker.listContainers({ all: true, filters: { label: ['dev.gantry.managed=true'] } });
      for (const c of left) out.push(`node ${n.name}: container ${c.Names[0]} of job ${c.Labels['dev.gantry.job-id']} left (${c.State})`);
      const gpus = await callNode<{ items: { uuid: string; holders: string[] }[] }>(n.gantry.url, 'GET', '/v1/gpus');
      if (gpus?.status !== 200) out.push(`node ${n.name}: GET /v1/gpus answered ${gpus?.status ?? 'nothing'}`);
      for (const g of gpus?.status === 200 ? gpus.body.items : []) {
        if (g.holders.length) out.push(`node ${n.name}: /v1/gpus says ${g.uuid} is held by ${g.holders}`);
      }
      const listed = await callNode<{ items: Node[] }>(n.gantry.url, 'GET', '/v1/nodes');
      if (listed?.status !== 200) out.push(`node ${n.name}: GET /v1/nodes answered ${listed?.status ?? 'nothing'}`);
      for (const m of listed?.status === 200 ? listed.body.items : []) {
        for (const g of m.gpus)
          if (g.holders.length) out.push(`node ${n.name}: /v1/nodes says ${m.name}'s ${g.uuid} is held by ${g.holders}`);
      }
    }
    if (out.length === 0 || Date.now() > deadline) return out;
    await sleep(500);
  }
}

/** Whether every node answers /v1/nodes and sees every node up. */
export async function fleetUp(fleet: Fleet): Promise<boolean> {
  for (const n of fleet.nodes) {
    const r = await callNode<{ items: Node[] }>(n.gantry.url, 'GET', '/v1/nodes');
    if (r?.status !== 200 || r.body.items.length !== fleet.nodes.length || r.body.items.some((m) => m.state !== 'up')) return false;
  }
  return true;
}
