import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/**
 * The operator's web page: three static files (no build step, no CDN),
 * read once at start-up and served from memory. The page talks only to the
 * public REST API with the bearer token the operator pastes; these routes
 * need no token because they carry no data.
 *
 * Explicit routes rather than @fastify/static: three known files need no
 * directory walking (so no path-traversal surface), no new dependency, and
 * they get one strict Content-Security-Policy that keeps the page on this
 * origin (no outside network) and blocks inline script.
 */
const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

const SECURITY_HEADERS = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  // Revalidate every time (cheap with the ETag), so an upgrade shows at once.
  'Cache-Control': 'no-cache',
};

/** src/ui/public when run from source; the same folder when run from dist/. */
export function uiAssetDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, 'public'), path.resolve(here, '..', '..', '..', 'src', 'ui', 'public')];
  const found = candidates.find((d) => fs.existsSync(path.join(d, 'index.html')));
  if (!found) throw new Error(`the web UI files were not found (looked in ${candidates.join(', ')})`);
  return found;
}

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

export async function uiRoutes(app: FastifyInstance): Promise<void> {
  const dir = uiAssetDir();
  const assets = new Map<string, Asset>();
  for (const [name, type] of Object.entries(FILES)) {
    const body = fs.readFileSync(path.join(dir, name));
    assets.set(name, { body, type, etag: `"${crypto.createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
  }

  const serve = (name: string) => async (request: FastifyRequest, reply: FastifyReply) => {
    const a = assets.get(name)!;
    reply.headers({ ...SECURITY_HEADERS, ETag: a.etag });
    if (request.headers['if-none-match'] === a.etag) return reply.code(304).send();
    return reply.type(a.type).send(a.body);
  };
  const hidden = { schema: { hide: true } };

  app.get('/', hidden, async (_request, reply) => reply.redirect('/ui/'));
  app.get('/ui', hidden, async (_request, reply) => reply.redirect('/ui/'));
  app.get('/ui/', hidden, serve('index.html'));
  app.get('/ui/app.js', hidden, serve('app.js'));
  app.get('/ui/style.css', hidden, serve('style.css'));
}
