import type { StoreChange } from '../change-feed.js';
import { carriedRecord, type JobPayload } from './job-announcement.js';

/*
 * One line of the change feed, as PostgreSQL delivers a notification or the
 * fleet's change relay forwards it (fleet/change-relay.ts), read into the
 * changes it reports.
 */

/**
 * A notification's payload as the statements of this store send it (small
 * keys: a payload is at most 8000 bytes), or a relay's mark line.
 */
type Payload =
  | JobPayload
  | { o?: undefined; k: 'mark'; m: string }
  | { o: string; k: 'logs'; j: [string, number][] }
  | { o: string; k: 'nodes' }
  | { o: string; k: 'decided'; n: string[] }
  | { o: string; k: 'report' }
  | { o: string; k: 'resigned' }
  /** A feed handing over to the relay, waiting to hear its own line (own-line.ts): reports nothing. */
  | { o: string; k: 'cut'; c: string };

/** What one line says. */
export interface Heard {
  origin: string | null;
  changes: StoreChange[];
  /** The writing transaction of a job change, when it says. */
  xid: string | null;
  /** A relay's mark, on a mark line. */
  mark: string | null;
}

/** A notification (or relayed line) read: who sent it and the changes it reports (none for one this node cannot read). */
export function parse(line: string | undefined): Heard {
  const none: Heard = { origin: null, changes: [], xid: null, mark: null };
  let p: Payload;
  try {
    p = JSON.parse(line ?? '') as Payload;
  } catch {
    return none;
  }
  if (typeof p !== 'object' || p === null) return none;
  if (p.k === 'mark') return { ...none, mark: typeof p.m === 'string' ? p.m : null };
  return {
    origin: typeof p.o === 'string' ? p.o : null,
    changes: changesOf(p),
    xid: p.k === 'job' && typeof p.x === 'string' && /^\d+$/.test(p.x) ? p.x : null,
    mark: null,
  };
}

function changesOf(p: Payload): StoreChange[] {
  switch (p.k) {
    case 'job':
      if (typeof p.j !== 'string') return [];
      return [{ kind: 'job', jobId: p.j, state: p.s, node: p.n ?? null, cancelRequested: p.c === true, record: carriedRecord(p) }];
    case 'logs':
      return Array.isArray(p.j) ? p.j.map(([jobId, lastSeq]) => ({ kind: 'log', jobId, lastSeq })) : [];
    case 'nodes':
      return [{ kind: 'nodes' }];
    case 'decided':
      return [{ kind: 'decided', nodes: Array.isArray(p.n) ? p.n : [] }];
    case 'report':
      return [{ kind: 'report' }];
    case 'resigned':
      return [{ kind: 'resigned' }];
    default:
      return [];
  }
}
