import assert from 'node:assert/strict';
import type { Store, StoreChange } from '../../src/store/store.js';

/** Every change a store's feed delivers, and a way to wait for one. */
export function collectChanges(store: Store): {
  changes: StoreChange[];
  next(match: (c: StoreChange) => boolean, timeoutMs?: number): Promise<StoreChange>;
} {
  const changes: StoreChange[] = [];
  const waiters: { match: (c: StoreChange) => boolean; resolve: (c: StoreChange) => void }[] = [];
  assert.ok(store.changes, 'a shared store has a change feed');
  store.changes.subscribe((c) => {
    changes.push(c);
    for (const w of [...waiters]) {
      if (w.match(c)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(c);
      }
    }
  });
  return {
    changes,
    next(match, timeoutMs = 5_000) {
      const seen = changes.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no matching change within ${timeoutMs} ms; got ${JSON.stringify(changes)}`)),
          timeoutMs,
        );
        waiters.push({
          match,
          resolve: (c) => {
            clearTimeout(timer);
            resolve(c);
          },
        });
      });
    },
  };
}
