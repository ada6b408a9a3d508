// End-to-end tests of the web page in real headless Chromium
// (test/helpers/browser.ts), against a live Gantry on the real Docker engine.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import type { Page } from 'playwright-core';
import { OPENAPI_INFO } from '../../src/api/server.js';
import type { GpuDevice } from '../../src/gpu/inventory.js';
import type { ContainerRuntime } from '../../src/runtime/runtime.js';
import { assertStayedHome, openBrowser, READER_TOKEN, SUBMITTER_TOKEN, signIn, WATCHER_TOKEN } from '../helpers/browser.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { ADMIN_TOKEN, client, type InProcessGantry, ROOT, startGantry, TEST_IMAGE, tempDir, tokensFile } from '../helpers/gantry.js';

// Browser globals used inside page.evaluate callbacks (the project compiles without the DOM lib).
interface El {
  getAttribute(name: string): string | null;
}
declare const sessionStorage: { getItem(key: string): string | null };
declare const localStorage: { length: number };
declare const document: {
  querySelectorAll(selector: string): Iterable<El> & { length: number };
  querySelector(selector: string): { textContent: string | null } | null;
};

const PUBLIC_DIR = path.join(ROOT, 'src', 'ui', 'public');

const GPUS: GpuDevice[] = [
  { index: 0, uuid: 'GPU-11111111-2222-3333-4444-555555555555', name: 'NVIDIA H200', memoryMiB: 143771 },
  { index: 1, uuid: 'GPU-66666666-7777-8888-9999-000000000000', name: 'NVIDIA H200', memoryMiB: 143771 },
];

const sh = (script: string, extra: Record<string, unknown> = {}) => ({ image: TEST_IMAGE, command: ['sh', '-c', script], ...extra });

/** Waits until the header describes the token's scopes exactly so. */
async function whoamiSays(page: Page, label: string): Promise<void> {
  await page.waitForFunction((want) => document.querySelector('#whoami')?.textContent === want, label);
}

async function gantryWithTokens(t: TestContext, env: Record<string, string> = {}, runtime?: ContainerRuntime): Promise<InProcessGantry> {
  const file = tokensFile([
    { owner: 'admin', scopes: ['admin'], token: ADMIN_TOKEN },
    { owner: 'admin', scopes: ['read'], token: READER_TOKEN },
    { owner: 'airflow', scopes: ['submit', 'read'], token: SUBMITTER_TOKEN },
    { owner: 'prometheus', scopes: ['read', 'metrics'], token: WATCHER_TOKEN },
  ]);
  return startGantry(
    t,
    { GANTRY_TOKENS_FILE: file, GANTRY_GPU_DRIVER: 'env', GANTRY_STOP_GRACE_SECONDS: '1', ...env },
    { gpuDevices: GPUS, ...(runtime ? { runtime } : {}) },
  );
}

/** The page's files as they lie under src/ui/public, with '/' separators. */
function pageFiles(dir = PUBLIC_DIR, prefix = ''): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? pageFiles(path.join(dir, e.name), `${prefix}${e.name}/`) : [`${prefix}${e.name}`]));
}

/** A GET with the path sent exactly as written (a URL parser would resolve `..` and `%2e%2e` first). */
function rawGet(origin: string, rawPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(`${origin}/`, { path: rawPath }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on('error', reject);
  });
}

test('UI: sign in with a pasted token; a submitted job moves from queued to succeeded with its log live', async (t) => {
  const g = await gantryWithTokens(t, { GANTRY_MAX_RUNNING: '1' });
  const b = await openBrowser(t, g.url);
  const { page } = b;

  await page.goto(`${g.url}/`);
  assert.equal(new URL(page.url()).pathname, '/ui/', '/ redirects to the page');
  await page.waitForSelector('#login');
  await b.shot('01-sign-in');
  await page.fill('#token', 'not-a-valid-token');
  await page.click('#login-submit');
  await page.waitForSelector('#login-error:not([hidden])');
  assert.match((await page.textContent('#login-error')) ?? '', /not valid/);
  await signIn(b, g);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('gantry.token')), ADMIN_TOKEN, 'kept in session storage');
  assert.equal(await page.evaluate(() => localStorage.length), 0, 'not in local storage');
  assert.ok(!page.url().includes(ADMIN_TOKEN));
  await page.waitForSelector('#whoami:has-text("admin")');

  // A GPU job holds the only run slot, so the next job waits in the queue.
  const blocker = await g.submit(sh('echo holding the slot; sleep 300', { name: 'gpu-blocker', gpus: { count: 1 } }));
  await g.waitFor(blocker.id, (j) => j.state === 'running');
  const lines = Array.from({ length: 6 }, (_, i) => `line-${i + 1} of the demo`);
  const job = await g.submit(
    sh(`${lines.map((l) => `echo '${l}'; sleep 0.5`).join('; ')}; echo 'a warning' >&2`, {
      name: 'ui-demo',
      priority: 5,
      labels: { team: 'ml' },
    }),
  );
  const other = await g.submit(sh('echo later', { name: 'after-demo' }));

  // Overview: the GPU with its holder, the queue in order with positions and priorities.
  await page.waitForSelector(`#queue tr[data-job="${job.id}"]`);
  await page.waitForSelector(`#gpus tr[data-gpu="${GPUS[0]!.uuid}"] a:has-text("gpu-blocker")`);
  const queueRows = await page.$$eval('#queue tbody tr', (trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent?.trim())),
  );
  assert.deepEqual(
    queueRows.map((r) => [r[0], r[1], r[2]]),
    [
      ['1', 'ui-demo', '5'],
      ['2', 'after-demo', '0'],
    ],
    'queue in order, with position and priority',
  );
  assert.match(queueRows[0]![5]!, /run slot/);
  assert.match((await page.textContent(`#gpus tr[data-gpu="${GPUS[0]!.uuid}"]`)) ?? '', /143,771 \/ 143,771 MiB/);
  assert.match((await page.textContent(`#gpus tr[data-gpu="${GPUS[1]!.uuid}"]`)) ?? '', /free/);
  await page.waitForSelector(`#active tr[data-job="${blocker.id}"]`);
  await b.shot('02-overview-queue-and-gpus');

  // The job's page, while it is queued.
  await page.click(`#queue tr[data-job="${job.id}"] a`);
  await page.waitForSelector('#job-state [data-state="queued"]');
  assert.match((await page.textContent('[data-field="position"]')) ?? '', /1 in the queue/);
  assert.match((await page.textContent('#spec')) ?? '', /"priority": 5/);
  assert.match((await page.textContent('[data-field="request-id"]')) ?? '', /^[0-9a-f-]{36}$/);
  await b.shot('03-job-queued');

  // Free the slot: the page follows the job through its states over SSE.
  await g.call('POST', `/v1/jobs/${blocker.id}/cancel`);
  await page.waitForSelector('#log .ln:has-text("line-1 of the demo")');
  const whenFirstLineShown = await g.job(job.id);
  assert.equal(whenFirstLineShown.state, 'running', 'the first line shows while the job still runs');
  assert.ok((await page.locator('#log .ln:has-text("line-6 of the demo")').count()) === 0, 'later lines are not there yet');
  await page.waitForSelector('#job-state [data-state="running"]');
  assert.equal(await page.textContent('#log-connection'), '● live');
  await page.waitForSelector('#log .ln:has-text("line-3 of the demo")');
  await b.shot('04-job-running-live-log');

  await page.waitForSelector('#job-state [data-state="succeeded"]', { timeout: 60_000 });
  await page.waitForSelector('#log-connection[data-state="ended"]');
  const shown = await page.$$eval('#log .ln', (els) => els.map((e) => [e.textContent?.replace(/\n$/, ''), e.classList.contains('stderr')]));
  assert.deepEqual(shown, [...lines.map((l) => [l, false]), ['a warning', true]], 'every line once, in order, stderr marked');
  assert.equal((await page.textContent('[data-field="exit-code"]'))?.trim(), '0');
  assert.ok(await page.isHidden('#cancel'), 'no cancel button on a finished job');
  await b.shot('05-job-succeeded');

  // Back on the overview, filter recent jobs by state.
  await g.waitFor(other.id);
  await page.click('a.back');
  await page.waitForSelector(`#recent tr[data-job="${job.id}"]`);
  await page.selectOption('#state-filter', 'cancelled');
  await page.waitForFunction((id) => {
    const rows = [...document.querySelectorAll('#recent tbody tr')];
    return rows.length === 1 && rows[0]!.getAttribute('data-job') === id;
  }, blocker.id);
  assert.match((await page.textContent(`#recent tr[data-job="${blocker.id}"]`)) ?? '', /cancelled by request/);
  await b.shot('06-overview-filter-cancelled');
  await page.selectOption('#state-filter', 'succeeded');
  await page.waitForFunction(() =>
    [...document.querySelectorAll('#recent tbody tr')].every((r) => r.getAttribute('data-state') === 'succeeded'),
  );
  const succeeded = await page.$$eval('#recent tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-job')));
  assert.deepEqual(succeeded.sort(), [job.id, other.id].sort());
  assert.match(page.url(), /#\/\?state=succeeded$/, 'the filter is kept in the address (no token there)');
  await page.selectOption('#state-filter', '');
  await page.waitForSelector(`#recent tr[data-job="${blocker.id}"]`);
  await b.shot('07-overview-all');
  assertStayedHome(b, g);
});

test('UI: the cancel button stops a running job; a read-only token gets no button', async (t) => {
  const g = await gantryWithTokens(t);
  const b = await openBrowser(t, g.url);
  const { page } = b;
  await signIn(b, g);
  const job = await g.submit(sh('echo started; i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done', { name: 'long-runner' }));
  await page.goto(`${g.url}/ui/#/jobs/${job.id}`);
  await page.waitForSelector('#job-state [data-state="running"]');
  await page.waitForSelector('#log .ln:has-text("tick 2")');
  await page.waitForSelector('#cancel:not([hidden])');
  await b.shot('10-running-with-cancel');

  await page.click('#cancel');
  assert.equal(await page.textContent('#cancel'), 'Really cancel?', 'one click only arms the button');
  assert.equal((await g.job(job.id)).state, 'running');
  await page.click('#cancel');
  await page.waitForSelector('#job-state [data-state="cancelled"]', { timeout: 30_000 });
  await page.waitForSelector('#log-connection[data-state="ended"]');
  const done = await g.job(job.id);
  assert.equal(done.state, 'cancelled');
  assert.equal(done.reason, 'cancelled by request');
  assert.match((await page.textContent('[data-field="reason"]')) ?? '', /cancelled by request/);
  assert.ok(await page.isHidden('#cancel'));
  await b.shot('11-cancelled');

  // A token without the cancel scope sees the job but no button.
  const other = await g.submit(sh('echo running; sleep 300', { name: 'not-yours-to-cancel' }));
  await g.waitFor(other.id, (j) => j.state === 'running');
  await page.click('#signout');
  await page.waitForSelector('#login');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('gantry.token')), null, 'forgotten');
  await signIn(b, g, READER_TOKEN);
  await page.waitForSelector('#whoami:has-text("read only")');
  await page.goto(`${g.url}/ui/#/jobs/${other.id}`);
  await page.waitForSelector('#job-state [data-state="running"]');
  await page.waitForSelector('#log .ln:has-text("running")');
  assert.ok(await page.isHidden('#cancel'), 'no cancel button without the cancel scope');
  await b.shot('12-read-only-token');
  await client(g.url).call('POST', `/v1/jobs/${other.id}/cancel`);
  await g.waitFor(other.id);
  assertStayedHome(b, g);
});

test('UI: the live log resumes after a dropped connection, without losing or repeating lines', async (t) => {
  const g = await gantryWithTokens(t);
  const b = await openBrowser(t, g.url);
  const { page } = b;
  // Watch the SSE requests at the socket, so the test can cut one.
  const sse: { res: ServerResponse; lastEventId: string | undefined }[] = [];
  g.app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if ((req.headers.accept ?? '').includes('text/event-stream')) {
      const h = req.headers['last-event-id'];
      sse.push({ res, lastEventId: Array.isArray(h) ? h[0] : h });
    }
  });
  await signIn(b, g);
  const n = 16;
  const job = await g.submit(sh(`i=1; while [ $i -le ${n} ]; do echo "row $i"; i=$((i+1)); sleep 0.3; done`, { name: 'resumer' }));
  await page.goto(`${g.url}/ui/#/jobs/${job.id}`);
  await page.waitForSelector('#log .ln:has-text("row 4")');
  assert.equal(sse.length, 1);
  sse[0]!.res.destroy(); // the connection drops mid-job
  await page.waitForSelector('#job-state [data-state="succeeded"]', { timeout: 60_000 });
  await page.waitForSelector('#log-connection[data-state="ended"]');
  const rows = await page.$$eval('#log .ln', (els) => els.map((e) => e.textContent?.trim()));
  assert.deepEqual(
    rows,
    Array.from({ length: n }, (_, i) => `row ${i + 1}`),
    'every line exactly once, in order',
  );
  assert.ok(sse.length >= 2, 'the page reconnected');
  assert.match(sse[1]!.lastEventId ?? '', /^\d+$/, 'the reconnect carried Last-Event-ID');
  assert.ok(Number(sse[1]!.lastEventId) >= 4);
  await b.shot('20-resumed-after-drop');
  assertStayedHome(b, g, /ERR_INCOMPLETE_CHUNKED_ENCODING.*\/logs\?tail=/);
});

test('UI: every file of the page is served from memory with the security headers, and nothing else under /ui/', async (t) => {
  const g = await gantryWithTokens(t);
  const files = pageFiles();
  assert.ok(files.includes('index.html') && files.includes('js/main.js'), `the page's files: ${files.join(', ')}`);
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };
  for (const f of files) {
    const r = await g.call('GET', `/ui/${f}`, { token: null });
    assert.equal(r.status, 200, f);
    assert.equal(String(r.headers['content-type']).split(';')[0], types[path.extname(f)], f);
    assert.equal(r.text, fs.readFileSync(path.join(PUBLIC_DIR, f), 'utf8'), f);
    assert.match(String(r.headers['content-security-policy']), /default-src 'none'; script-src 'self';/, f);
    assert.equal(r.headers['x-content-type-options'], 'nosniff', f);
    assert.equal(r.headers['cache-control'], 'no-cache', f);
    const etag = String(r.headers.etag);
    assert.equal((await g.call('GET', `/ui/${f}`, { token: null, headers: { 'if-none-match': etag } })).status, 304, f);
  }
  const index = await g.call('GET', '/ui/', { token: null });
  assert.equal(index.text, fs.readFileSync(path.join(PUBLIC_DIR, 'index.html'), 'utf8'));
  assert.match(index.text, /<script type="module" src="\/ui\/js\/main.js"><\/script>/);
  for (const p of ['/ui/../package.json', '/ui/js/../../ui/routes.ts', '/ui/%2e%2e/routes.ts', '/ui/..%2froutes.ts', '/ui/js/', '/ui/js']) {
    assert.equal(await rawGet(g.url, p), 404, p);
  }
});

test("UI: every module loads under the CSP; the header names the token's scopes as GET /v1/me gives them, and an admin token as admin", async (t) => {
  const g = await gantryWithTokens(t);
  const b = await openBrowser(t, g.url);
  const { page } = b;
  const served = new Map<string, number>();
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (u.origin === g.url && u.pathname.startsWith('/ui/')) served.set(u.pathname, r.status());
  });

  for (const [shot, token, label] of [
    ['30-admin', ADMIN_TOKEN, 'token: admin (every scope)'],
    ['31-reader', READER_TOKEN, 'token: read only'],
    ['32-submitter', SUBMITTER_TOKEN, 'token: submit, read'],
    ['33-watcher', WATCHER_TOKEN, 'token: read, metrics'],
  ] as const) {
    await signIn(b, g, token);
    await whoamiSays(page, label);
    await b.shot(`${shot}-token-scopes`);
    await page.click('#signout');
    await page.waitForSelector('#login');
  }
  assert.deepEqual((await g.call<{ items: unknown[] }>('GET', '/v1/jobs')).body.items, [], 'learning the scopes submitted nothing');

  const modules = pageFiles().filter((f) => f.endsWith('.js'));
  for (const f of modules) {
    const status = served.get(`/ui/${f}`);
    assert.ok(status === 200 || status === 304, `/ui/${f} loaded (got ${status})`);
  }
  assertStayedHome(b, g);
});

test("UI: the Nodes card shows this node; an admin drains and undrains it there; a job's node and attempt show; a reader gets no buttons", async (t) => {
  // An in-memory engine: this test is about the page, not containers.
  const runtime = new FakeRuntime();
  const node = 'ui-node-1';
  const g = await gantryWithTokens(t, { GANTRY_NODE_NAME: node, GANTRY_NODE_LABELS: 'zone=a,tier=gold' }, runtime);
  const b = await openBrowser(t, g.url);
  const { page } = b;
  const row = `#nodes tr[data-node="${node}"]`;
  await signIn(b, g);
  await whoamiSays(page, 'token: admin (every scope)');
  await page.waitForSelector(`${row} button[data-action="drain"]`);
  const cells = async () => page.$$eval(`${row} td`, (tds) => tds.map((td) => td.textContent?.replace(/\s+/g, ' ').trim()));
  const first = await cells();
  assert.equal(first[0], `${node}v${OPENAPI_INFO.version}`);
  assert.equal(first[1], 'up');
  assert.equal(first[2], 'no');
  assert.match(first[3]!, /^\d+(\.\d)? s ago$/, 'heartbeat age');
  assert.equal(first[4], '0 / 2', 'GPUs used / total');
  assert.equal(first[5], '0', 'running jobs');
  assert.equal(first[6], 'zone=atier=gold');
  assert.equal(await page.textContent('#node-count'), '1');

  // A GPU job runs: the card counts it; the job tables name its node.
  const holder = await g.submit(sh('sleep 300', { name: 'holds-a-gpu', gpus: { count: 1 } }));
  await g.waitFor(holder.id, (j) => j.state === 'running');
  await page.waitForFunction((sel) => document.querySelector(`${sel} [data-field="gpus"]`)?.textContent === '1 / 2', row);
  assert.equal((await page.textContent(`${row} [data-field="running"]`))?.trim(), '1');
  await page.waitForSelector(`#active tr[data-job="${holder.id}"] td.node [data-node="${node}"]`);
  await page.waitForSelector(`#recent tr[data-job="${holder.id}"] td.node [data-node="${node}"]`);
  await b.shot('40-nodes-card-admin');

  // Drain from the page: the switch is stored, the row says so, and a new job waits saying why.
  await page.click(`${row} button[data-action="drain"]`);
  await page.waitForSelector(`#nodes tr[data-node="${node}"][data-drained="true"] button[data-action="undrain"]`);
  assert.equal((await page.textContent(`${row} [data-field="drained"]`))?.trim(), 'drained');
  assert.equal((await g.call<{ drained: boolean }>('GET', `/v1/nodes/${node}`)).body.drained, true);
  const waiting = await g.submit(sh('echo after the drain', { name: 'waits-for-undrain' }));
  await page.waitForSelector(`#queue tr[data-job="${waiting.id}"] td.reason:has-text("is drained")`);
  await b.shot('41-node-drained');

  await page.click(`${row} button[data-action="undrain"]`);
  await page.waitForSelector(`#nodes tr[data-node="${node}"][data-drained="false"] button[data-action="drain"]`);
  assert.equal((await g.call<{ drained: boolean }>('GET', `/v1/nodes/${node}`)).body.drained, false);
  await g.waitFor(waiting.id, (j) => j.state === 'running');

  // The job's page names its node and attempt.
  await page.goto(`${g.url}/ui/#/jobs/${waiting.id}`);
  await page.waitForSelector('#job-state [data-state="running"]');
  assert.equal((await page.textContent('[data-field="node"]'))?.trim(), node);
  assert.equal((await page.textContent('[data-field="attempt"]'))?.trim(), '1');
  await b.shot('42-job-node-and-attempt');

  // A token that may read but is no admin's sees the card without buttons.
  await page.goto(`${g.url}/ui/#/`);
  await page.click('#signout');
  await page.waitForSelector('#login');
  await signIn(b, g, READER_TOKEN);
  await whoamiSays(page, 'token: read only');
  await page.waitForSelector(`${row}[data-state="up"]`);
  assert.equal(await page.locator('#nodes button').count(), 0, 'no drain button without admin');
  const headers = await page.$$eval('#nodes th', (ths) => ths.map((th) => th.textContent));
  assert.deepEqual(headers, ['Node', 'State', 'Drained', 'Heartbeat', 'GPUs used', 'Running', 'Labels']);
  await b.shot('43-nodes-card-reader');
  assertStayedHome(b, g);
});

test('UI: the GPUs card shows each card’s health and why; an admin drains and undrains a card there; a reader gets no buttons', async (t) => {
  const g = await gantryWithTokens(t, { GANTRY_GPU_HEALTH_INTERVAL_SECONDS: '0' }, new FakeRuntime());
  const [card0, card1] = [GPUS[0]!.uuid, GPUS[1]!.uuid];
  await g.app.gantry.health.fault(card1, { code: 'xid_79', reason: 'Xid 79: GPU has fallen off the bus.' });
  const b = await openBrowser(t, g.url);
  const { page } = b;
  await signIn(b, g);
  const health = (uuid: string) => `#gpus tr[data-gpu="${uuid}"] [data-field="health"]`;
  await page.waitForSelector(`${health(card1)}[data-health="unhealthy"] button[data-action="undrain"]`);
  assert.equal((await page.textContent(`${health(card1)} [data-field="health-reason"]`))?.trim(), 'Xid 79: GPU has fallen off the bus.');
  assert.equal(await page.getAttribute(`${health(card0)}`, 'data-health'), 'healthy');
  const headers = await page.$$eval('#gpus th', (ths) => ths.map((th) => th.textContent));
  assert.deepEqual(headers, ['#', 'GPU', 'Health', 'Memory allocated', 'Held by']);
  await b.shot('50-gpu-unhealthy');

  await page.click(`${health(card0)} button[data-action="drain"]`);
  await page.waitForSelector(`${health(card0)}[data-health="drained"] button[data-action="undrain"]`);
  assert.match((await page.textContent(health(card0))) ?? '', /drained by admin/);
  assert.doesNotMatch((await page.textContent('#gpus')) ?? '', /object|undefined|null/);
  await page.click(`${health(card1)} button[data-action="undrain"]`);
  await page.waitForSelector(`${health(card1)}[data-health="healthy"] button[data-action="drain"]`);
  const states = (await g.call<{ items: { health: { state: string } }[] }>('GET', '/v1/gpus')).body.items.map((c) => c.health.state);
  assert.deepEqual(states, ['drained', 'healthy']);
  await b.shot('51-gpu-drained-and-back');

  await page.click('#signout');
  await page.waitForSelector('#login');
  await signIn(b, g, READER_TOKEN);
  await page.waitForSelector(`${health(card0)}[data-health="drained"]`);
  assert.equal(await page.locator('#gpus button').count(), 0, 'no drain button without admin');
  assertStayedHome(b, g);
});

test('UI: the Teams card shows each team’s use against its quota; a token in no team sees no card', async (t) => {
  const quotas = path.join(tempDir(), 'quotas.json');
  fs.writeFileSync(
    quotas,
    JSON.stringify([
      { name: 'ml', owners: ['airflow'], gpus: 1, borrowGpus: 1, maxRunning: 3, maxQueued: 5 },
      { name: 'web', owners: ['carol'], gpus: 1 },
    ]),
  );
  const gate = tempDir('gantry-gate-');
  const g = await gantryWithTokens(t, {
    GANTRY_QUOTAS_FILE: quotas,
    GANTRY_MOUNT_ALLOWLIST: gate,
    GANTRY_FAIR_SHARE_HALF_LIFE_SECONDS: '3600',
  });
  const airflow = client(g.url, SUBMITTER_TOKEN);
  const held = (name: string) =>
    sh('while [ ! -e /gate/open ]; do sleep 0.05; done', { name, gpus: { count: 1 }, mounts: [{ source: gate, target: '/gate' }] });
  // Team ml holds its GPU and borrows the other; its third GPU job waits on its quota.
  const running = [await airflow.submit(held('m1')), await airflow.submit(held('m2'))];
  for (const j of running) await airflow.waitFor(j.id, (x) => x.state === 'running');
  const waiting = await airflow.submit(held('m3'));
  await airflow.waitFor(waiting.id, (x) => x.waiting?.code === 'quota');

  const b = await openBrowser(t, g.url);
  const { page } = b;
  await signIn(b, g);
  await page.waitForSelector('#teams:not([hidden]) tr[data-team="ml"]');
  const cell = async (team: string, field: string) =>
    (await page.textContent(`#teams tr[data-team="${team}"] [data-field="${field}"]`))?.trim();
  assert.deepEqual(await page.$$eval('#teams th', (ths) => ths.map((th) => th.textContent)), [
    'Team',
    'GPUs held / nominal (+borrow)',
    'Running / max',
    'Queued / max',
    'Borrowed',
    'Recent use',
  ]);
  assert.equal(await cell('ml', 'gpus'), '2 / 1 (+1)');
  assert.equal(await cell('ml', 'running'), '2 / 3');
  assert.equal(await cell('ml', 'queued'), '1 / 5');
  assert.equal(await cell('ml', 'borrowed'), '1');
  assert.match((await cell('ml', 'fair-share')) ?? '', /^\d+\.\d+ GPU-h$/);
  assert.equal(await cell('web', 'gpus'), '0 / 1');
  assert.equal(await cell('web', 'running'), '0');
  assert.equal(await cell('web', 'queued'), '0');
  assert.equal(await cell('web', 'fair-share'), '0.00 GPU-h');
  assert.doesNotMatch((await page.textContent('#teams')) ?? '', /object|undefined|null|NaN/);
  await b.shot('60-teams');

  // The watcher's owner is in no team: no card.
  await page.click('#signout');
  await page.waitForSelector('#login');
  await signIn(b, g, WATCHER_TOKEN);
  // The GPUs card is filled by the same refresh that decides the Teams card.
  await page.waitForSelector('#gpus table');
  assert.equal(await page.isHidden('#teams'), true);
  fs.writeFileSync(path.join(gate, 'open'), '');
  for (const j of [...running, waiting]) assert.equal((await airflow.waitFor(j.id)).state, 'succeeded');
  assertStayedHome(b, g);
});
