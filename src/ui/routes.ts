import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/**
 * The operator's web page: static files under src/ui/public (plain ES
 * modules, no build step, no CDN), read once at start-up and served from
 * memory. The page talks only to the public REST API with the bearer token
 * the operator pastes; these routes need no token because they carry no data.
 *
 * One explicit route per file found at start-up rather than @fastify/static:
 * no request path ever reaches the file system (so no path-traversal
 * surface), no new dependency, and every file gets one strict
 * Content-Security-Policy that keeps the page on this origin (no outside
 * network) and blocks inline script.
 */
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** Names that are plain route segments: Fastify reads `:`, `*` and `(` in a path as parameters. */
const SAFE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

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

/**
 * src/ui/public, from source (src/ui/routes.ts) and from the build
 * (dist/src/ui/routes.js): the page's files are not compiled, so the build
 * reads them from the source tree.
 */
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

/**
 * The page's files under `dir`, keyed by their path relative to it with `/`
 * separators. Only regular files of a known type with plain names count:
 * links are not followed (nothing outside the folder is served), and hidden
 * or other files (an editor's backup, say) are not part of the page.
 */
function readAssets(dir: string, prefix = ''): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (!SAFE_NAME.test(entry.name)) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      for (const [name, asset] of readAssets(full, `${prefix}${entry.name}/`)) assets.set(name, asset);
      continue;
    }
    const type = TYPES[path.extname(entry.name)];
    if (!entry.isFile() || !type) continue;
    const body = fs.readFileSync(full);
    assets.set(`${prefix}${entry.name}`, {
      body,
      type,
      etag: `"${crypto.createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
    });
  }
  return assets;
}

export async function uiRoutes(app: FastifyInstance): Promise<void> {
  const assets = readAssets(uiAssetDir());
  const index = assets.get('index.html');
  if (!index) throw new Error('the web UI has no index.html');

  const serve = (a: Asset) => async (request: FastifyRequest, reply: FastifyReply) => {
    reply.headers({ ...SECURITY_HEADERS, ETag: a.etag });
    if (request.headers['if-none-match'] === a.etag) return reply.code(304).send();
    return reply.type(a.type).send(a.body);
  };
  const hidden = { schema: { hide: true } };

  app.get('/', hidden, async (_request, reply) => reply.redirect('/ui/'));
  app.get('/ui', hidden, async (_request, reply) => reply.redirect('/ui/'));
  app.get('/ui/', hidden, serve(index));
  for (const [name, asset] of assets) app.get(`/ui/${name}`, hidden, serve(asset));
}
