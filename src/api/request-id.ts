import crypto from 'node:crypto';
import type { IncomingMessage } from 'node:http';

const CLIENT_ID = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * A request's id: the caller's `X-Request-Id` when it is a plain token
 * (so Airflow's and Gantry's logs can be joined), else a fresh UUID. It is
 * sent back in `X-Request-Id` and written on the request's log line.
 */
export function requestIdFor(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && CLIENT_ID.test(given) ? given : crypto.randomUUID();
}
