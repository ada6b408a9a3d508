import type { FastifyBaseLogger } from 'fastify';

/** The fields of the one log line written for every request (issue 9). */
export interface RequestLine {
  /** Set only where the logger is not already the request's child logger (which binds it). */
  reqId?: string;
  method: string;
  url: string;
  /** The route's pattern (`/v1/jobs/:id`); absent when no route matched. */
  route: string | undefined;
  status: number;
  /** Milliseconds from routing to the response, two decimals. */
  ms: number;
  owner: string | undefined;
}

export function logRequest(log: Pick<FastifyBaseLogger, 'info'>, line: RequestLine): void {
  log.info(line, 'request');
}

export function roundMs(ms: number): number {
  return Math.round(ms * 100) / 100;
}
