import { StoreUnavailableError } from '../../model/errors.js';

/** How long a client is told to wait before trying again when PostgreSQL cannot be reached. */
const RETRY_UNREACHABLE_SECONDS = 5;

/** Socket errors that mean PostgreSQL cannot be reached (now). */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
]);

/**
 * SQLSTATEs that mean "not now" rather than a bug: the server shutting down
 * or starting up, too many connections, out of memory, an I/O error, or a
 * read-only server (a standby after a failover). Class 08 (connection
 * exceptions) is matched by its prefix.
 */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53000', '53200', '53300', '58030', '25006']);
const FULL_SQLSTATE = '53100';

/**
 * pg's own errors for a connection that is gone, never came, or stopped
 * answering (its query_timeout, db.ts); they carry no code.
 */
const CONNECTION_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|not queryable|Connection ended unexpectedly|connection timeout|timeout expired|Query read timeout/i;

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Whether the error says PostgreSQL could not be reached or the connection was lost (not that a statement failed). */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = codeOf(err);
  if (code !== undefined && (SOCKET_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code) || /^08[0-9A-Z]{3}$/.test(code))) return true;
  if (err instanceof AggregateError && err.errors.some(isConnectionError)) return true;
  return CONNECTION_MESSAGES.test(err.message);
}

/** The error a caller sees: StoreUnavailableError for "cannot be written now", anything else unchanged. */
export function storeError(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof StoreUnavailableError) return err;
  if (codeOf(err) === FULL_SQLSTATE) return new StoreUnavailableError('full', `the store's disk is full: ${err.message}`);
  if (isConnectionError(err)) {
    return new StoreUnavailableError('unavailable', `the store cannot be reached: ${err.message}`, RETRY_UNREACHABLE_SECONDS);
  }
  return err;
}
