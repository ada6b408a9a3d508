import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';

export interface OpenMetricsListener {
  /** Resolves once listening; rejects when the port cannot be had (the caller decides whether that is fatal). */
  listen(host: string, port: number): Promise<void>;
  /** Drops open connections and stops listening; does nothing when not listening. */
  close(): Promise<void>;
  /** Where it listens, or null when it does not. */
  address(): AddressInfo | null;
}

export interface OpenMetricsListenerOptions {
  scrape: () => Promise<string>;
  contentType: string;
  log: Pick<Logger, 'info' | 'error'>;
}

/**
 * The listener of GANTRY_METRICS=open: `GET /metrics` (and HEAD) with no
 * token, on a port of its own so that the API port keeps asking for one.
 * It serves nothing else.
 */
export function openMetricsListener(o: OpenMetricsListenerOptions): OpenMetricsListener {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('only GET /metrics is served here\n');
      return;
    }
    o.scrape().then(
      (body) => res.writeHead(200, { 'Content-Type': o.contentType }).end(req.method === 'HEAD' ? undefined : body),
      (err: unknown) => {
        o.log.error({ err }, 'metrics scrape failed');
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end('scrape failed\n');
      },
    );
  });

  return {
    listen: (host, port) =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port }, () => {
          server.off('error', reject);
          // A listening server's later errors (a failed accept) are logged, never thrown at the process.
          server.on('error', (err) => o.log.error({ err }, 'open metrics listener error'));
          o.log.info({ address: server.address() }, 'metrics served without a token (GANTRY_METRICS=open)');
          resolve();
        });
      }),
    close: async () => {
      if (!server.listening) return;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    address: () => {
      const a = server.address();
      return a && typeof a !== 'string' ? a : null;
    },
  };
}
