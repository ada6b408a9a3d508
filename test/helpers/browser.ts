// Real headless Chromium for the page's end-to-end tests (Debian's
// /usr/bin/chromium driven by playwright-core; no browser download):
// requests off Gantry's origin refused and recorded, console errors (CSP
// violations among them) collected, and the bytes each response took on the
// wire counted. Screenshots go to test-artifacts/ui/.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { ADMIN_TOKEN, type InProcessGantry, ROOT, tempDir } from './gantry.js';

const CHROMIUM = process.env.GANTRY_CHROMIUM ?? '/usr/bin/chromium';
export const ARTIFACTS = path.join(ROOT, 'test-artifacts', 'ui');
export const READER_TOKEN = 'reader-token-0123456789abcdef';
export const SUBMITTER_TOKEN = 'submitter-token-0123456789abcdef';
export const WATCHER_TOKEN = 'watcher-token-0123456789abcdef';
export const OTHER_OWNER_TOKEN = 'other-owner-token-0123456789abcdef';
const TOKENS = [ADMIN_TOKEN, READER_TOKEN, SUBMITTER_TOKEN, WATCHER_TOKEN, OTHER_OWNER_TOKEN];

export interface Browser {
  page: Page;
  ctx: BrowserContext;
  /** Every URL the page asked for (to prove it stays on Gantry's origin). */
  requests: string[];
  /** Console errors and uncaught exceptions (CSP violations show up here). */
  errors: string[];
  /** Each finished response: its URL and the bytes it took on the wire (headers and body as sent). */
  transfers: { url: string; bytes: number }[];
  shot(name: string): Promise<void>;
}

export async function openBrowser(t: TestContext, origin: string): Promise<Browser> {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const ctx = await chromium.launchPersistentContext(tempDir('gantry-chromium-'), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1360, height: 900 },
  });
  t.after(() => ctx.close());
  const requests: string[] = [];
  const errors: string[] = [];
  const transfers: Browser['transfers'] = [];
  // Nothing leaves loopback: any other request is refused and recorded.
  await ctx.route('**/*', (route) => {
    const url = route.request().url();
    return url.startsWith(origin) || url.startsWith('data:') || url.startsWith('blob:') ? route.continue() : route.abort();
  });
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.on('request', (r) => requests.push(r.url()));
  page.on('requestfinished', (r) => {
    if (!r.url().startsWith(origin)) return;
    void r
      .sizes()
      .then((s) => transfers.push({ url: r.url(), bytes: s.responseHeadersSize + s.responseBodySize }))
      .catch(() => undefined);
  });
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // Expected refusals: the token check at sign-in.
    const expected = /\/v1\/jobs\?limit=1$/.test(m.location().url);
    if (!(expected && m.text().startsWith('Failed to load resource'))) errors.push(`${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.setDefaultTimeout(30_000);
  const b: Browser = {
    page,
    ctx,
    requests,
    errors,
    transfers,
    async shot(name) {
      await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
    },
  };
  t.after(async () => {
    // Keep a picture of the last state of a failing test.
    if (!page.isClosed())
      await page.screenshot({ path: path.join(ARTIFACTS, `last-${t.name.slice(0, 40).replace(/\W+/g, '-')}.png`) }).catch(() => undefined);
  });
  return b;
}

export async function signIn(b: Browser, g: InProcessGantry, token = ADMIN_TOKEN): Promise<void> {
  await b.page.goto(`${g.url}/`);
  await b.page.fill('#token', token);
  await b.page.click('#login-submit');
  await b.page.waitForSelector('#recent table, #recent .empty');
}

export function assertStayedHome(b: Browser, g: InProcessGantry, expectedErrors?: RegExp): void {
  const away = b.requests.filter((u) => !u.startsWith(g.url) && !u.startsWith('data:') && !u.startsWith('blob:'));
  assert.deepEqual(away, [], 'the page asked for nothing outside Gantry');
  assert.ok(!b.requests.some((u) => TOKENS.some((token) => u.includes(token))), 'no token in any URL');
  assert.deepEqual(
    b.errors.filter((e) => !expectedErrors?.test(e)),
    [],
    'no console errors (CSP violations included)',
  );
}
