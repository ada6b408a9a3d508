import { RuntimeError, type RuntimeErrorKind, type RuntimeOp } from '../runtime.js';

/** Socket-level errors that mean the engine is not there (as opposed to refusing a request). */
const UNREACHABLE_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EACCES', 'ERR_STREAM_PREMATURE_CLOSE']);

/** The engine's own error text, without dockerode's HTTP wrapper noise. */
function engineMessage(err: unknown): string {
  const e = err as { json?: { message?: string } | string | null; message?: string } | null;
  if (e?.json && typeof e.json === 'object' && typeof e.json.message === 'string') return e.json.message;
  return e?.message ?? String(err);
}

function errorKind(err: unknown): RuntimeErrorKind {
  const e = err as { statusCode?: number; code?: string } | null;
  if (e?.code !== undefined && UNREACHABLE_CODES.has(e.code)) return 'unreachable';
  if (e?.statusCode === 404) return 'not_found';
  if (e?.statusCode === 400) return 'bad_request';
  return 'other';
}

export function toRuntimeError(op: RuntimeOp, err: unknown): RuntimeError {
  if (err instanceof RuntimeError) return err;
  return new RuntimeError(errorKind(err), op, engineMessage(err));
}
