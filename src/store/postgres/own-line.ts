import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { CHANNEL } from './db.js';

/**
 * Proof that a listening connection has delivered every notification of the
 * transactions committed before a moment: notify a line of one's own then,
 * and wait to hear it. Notifying transactions commit one at a time, in the
 * order the queue delivers them, so whatever committed before comes first.
 * (An answer to a statement is no such proof: a committing session signals
 * the listeners only after its commit is visible.)
 */
export class OwnLine {
  private awaited: { line: string; heard: () => void } | null = null;

  constructor(private readonly node: string) {}

  /** Whether a notification is the line awaited now; if so, its waiter resolves. */
  is(payload: string | undefined): boolean {
    if (this.awaited === null || payload !== this.awaited.line) return false;
    this.awaited.heard();
    return true;
  }

  /** Notifies a line on `client` and resolves once `client` hears it back (rejects after `timeoutMs`). */
  heard(client: pg.Client, timeoutMs: number): Promise<void> {
    const line = JSON.stringify({ o: this.node, k: 'cut', c: randomUUID() });
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.awaited = null;
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(
        () => done(new Error(`the listening connection did not hear its own notification within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.awaited = { line, heard: () => done() };
      client.query('SELECT pg_notify($1, $2)', [CHANNEL, line]).catch((err: Error) => done(err));
    });
  }
}
