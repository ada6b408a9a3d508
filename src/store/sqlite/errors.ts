import { StoreUnavailableError } from '../../model/errors.js';

/**
 * SQLite result codes that mean "this write cannot be made now" rather than
 * a bug: a full disk or quota, an I/O error, a read-only file or a lock held
 * too long. They become StoreUnavailableError; anything else is rethrown.
 */
const UNAVAILABLE: Record<string, 'full' | 'unavailable'> = {
  SQLITE_FULL: 'full',
  SQLITE_IOERR: 'unavailable',
  SQLITE_READONLY: 'unavailable',
  SQLITE_BUSY: 'unavailable',
  SQLITE_CANTOPEN: 'unavailable',
};

function storeError(err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return err;
  const kind = UNAVAILABLE[code] ?? UNAVAILABLE[code.split('_').slice(0, 2).join('_')];
  if (kind === undefined) return err;
  const detail =
    kind === 'full' ? `the store's disk is full: ${(err as Error).message}` : `the store cannot be written: ${(err as Error).message}`;
  return new StoreUnavailableError(kind, detail);
}

/** Runs a write; a SQLite error that means "not now" becomes StoreUnavailableError. */
export function writing<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw storeError(err);
  }
}
