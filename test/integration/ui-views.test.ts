// The operator page's views with live data, in real headless Chromium
// (test/helpers/browser.ts): a Gantry on the real Docker engine runs the
// jobs, and an `nvidia-smi` on the PATH answers the GPU sampler with
// figures that change at every reading, so the charts draw what the
// sampler really kept. With GANTRY_PAGE_SHOTS=<dir> the views are also
// photographed there (docs/img holds the README's pictures, made so).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Page } from 'playwright-core';
import { assertStayedHome, type Browser, OTHER_OWNER_TOKEN, openBrowser, SUBMITTER_TOKEN, signIn } from '../helpers/browser.js';
import {
  ADMIN_TOKEN,
  client,
  containersOf,
  docker,
  type InProcessGantry,
  startGantry,
  TEST_IMAGE,
  tempDir,
  tokensFile,
} from '../helpers/gantry.js';

// Browser globals used inside page.evaluate callbacks (the project compiles without the DOM lib).
interface El {
  getAttribute(name: string): string | null;
  textContent: string | null;
}
declare const document: {
  querySelectorAll(selector: string): Iterable<El> & { length: number };
  querySelector(selector: string): El | null;
  body: { outerHTML: string };
};

const UUID0 = 'GPU-11111111-aaaa-4000-8000-000000000001';
const UUID1 = 'GPU-22222222-bbbb-4000-8000-000000000002';
const SECRET_ENV_VALUE = 'env-value-never-on-the-page';
const SHOTS = process.env.GANTRY_PAGE_SHOTS;

// Each reading differs from the last: utilisation, memory and power follow a counter.
const SMI_DIR = tempDir('gantry-fake-smi-');
fs.writeFileSync(
  path.join(SMI_DIR, 'nvidia-smi'),
  `#!/bin/sh
case "$1" in
  --query-gpu=uuid,utilization.gpu,memory.used,power.draw)
    n=$(( $(cat "${SMI_DIR}/n" 2>/dev/null || echo 0) + 1 )); echo "$n" > "${SMI_DIR}/n"
    u=$(( 40 + (n * 37) % 60 ))
    echo "${UUID0}, $u, $(( 30000 + (n * 997) % 20000 )), $(( 200 + u * 4 )).25"
    echo "${UUID1}, $(( u / 2 )), $(( 12000 + (n * 311) % 6000 )), $(( 120 + u )).50" ;;
  --query-compute-apps=gpu_uuid,pid,used_memory) cat "${SMI_DIR}/apps.csv" 2>/dev/null || true ;;
  *) echo "fake nvidia-smi: unexpected arguments: $*" >&2; exit 2 ;;
esac
`,
  { mode: 0o755 },
);
process.env.PATH = `${SMI_DIR}:${process.env.PATH}`;

const sh = (script: string, extra: Record<string, unknown> = {}) => ({ image: TEST_IMAGE, command: ['sh', '-c', script], ...extra });

async function gantry(t: TestContext, gate: string): Promise<InProcessGantry> {
  const quotas = path.join(tempDir(), 'quotas.json');
  fs.writeFileSync(
    quotas,
    JSON.stringify([
      { name: 'ml', owners: ['airflow'], gpus: 1, borrowGpus: 1 },
      { name: 'research', owners: ['bob'], gpus: 1 },
    ]),
  );
  const tokens = tokensFile([
    { owner: 'admin', scopes: ['admin'], token: ADMIN_TOKEN },
    { owner: 'airflow', scopes: ['submit', 'read'], token: SUBMITTER_TOKEN },
    { owner: 'bob', scopes: ['submit', 'read'], token: OTHER_OWNER_TOKEN },
  ]);
  return startGantry(t, {
    GANTRY_TOKENS_FILE: tokens,
    GANTRY_QUOTAS_FILE: quotas,
    GANTRY_GPUS: `${UUID0}:81920,${UUID1}:81920`,
    GANTRY_GPU_DRIVER: 'env',
    GANTRY_GPU_SAMPLE_SECONDS: '0.5',
    GANTRY_MOUNT_ALLOWLIST: gate,
    GANTRY_STOP_GRACE_SECONDS: '1',
  });
}

/** A picture of the view for the test's artifacts, and for the docs when GANTRY_PAGE_SHOTS names a folder. */
async function picture(b: Browser, name: string): Promise<void> {
  await b.shot(name);
  if (SHOTS) {
    fs.mkdirSync(SHOTS, { recursive: true });
    await b.page.screenshot({ path: path.join(SHOTS, `page-${name}.png`), fullPage: true });
  }
}

/** The number a `data-field` element starts with. */
async function leadingNumber(page: Page, selector: string): Promise<number> {
  return Number(/^\d+/.exec(((await page.textContent(selector)) ?? '').trim())?.[0] ?? Number.NaN);
}

/** The points a chart's line passes through (its path's commands). */
async function linePoints(page: Page, chart: string): Promise<number> {
  const d = (await page.getAttribute(`svg[data-chart="${chart}"] path.line`, 'd')) ?? '';
  return (d.match(/[ML]/g) ?? []).length;
}

/** The page's whole markup on screen, to prove what it never holds. */
const markup = (page: Page) => page.evaluate(() => document.body.outerHTML);

test('UI views with live data: job attempts and GPU charts, GPUs over time, usage with CSV, audit for admins; another owner and env values never shown', async (t) => {
  const gate = tempDir('gantry-gate-');
  fs.chmodSync(gate, 0o755);
  // Run first of the after-hooks (they run in order), so a failure ends the jobs and their live streams before Gantry closes.
  t.after(() => fs.writeFileSync(path.join(gate, 'open'), ''));
  const g = await gantry(t, gate);
  const airflow = client(g.url, SUBMITTER_TOKEN);
  const bob = client(g.url, OTHER_OWNER_TOKEN);
  const held = (name: string, gpus: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    sh('while [ ! -e /gate/open ]; do sleep 0.05; done', { name, gpus, mounts: [{ source: gate, target: '/gate' }], ...extra });

  // A GPU job whose first attempt fails and is retried; the second succeeds.
  const flaky = await airflow.submit(
    sh('echo attempt $GANTRY_ATTEMPT; sleep 1.5; [ "$GANTRY_ATTEMPT" = 2 ] || exit 3', {
      name: 'flaky-eval',
      gpus: { count: 1 },
      retry: { maxAttempts: 2, on: ['exit_code'] },
    }),
  );
  const flakyDone = await airflow.waitFor(flaky.id, undefined, 60_000);
  assert.equal(flakyDone.state, 'succeeded', flakyDone.reason ?? '');
  assert.equal(flakyDone.attempt, 2);

  // Two owners' jobs hold the two cards; bob's shares its card with a declared memory.
  const train = await airflow.submit(
    sh(
      'i=0; until [ -e /gate/open ]; do i=$((i+1)); [ $((i % 40)) = 0 ] && echo "step $i loss $((90000 / (i + 90)))e-3"; sleep 0.05; done',
      {
        name: 'train-llm',
        gpus: { count: 1 },
        env: { WANDB_API_KEY: SECRET_ENV_VALUE },
        mounts: [{ source: gate, target: '/gate' }],
      },
    ),
  );
  const theirs = await bob.submit(held('bob-finetune', { count: 1, memoryMiB: 20000 }));
  await airflow.waitFor(train.id, (j) => j.state === 'running');
  await bob.waitFor(theirs.id, (j) => j.state === 'running');
  const [c] = await containersOf(theirs.id);
  assert.ok(c);
  const pid = (await docker.getContainer(c.Id).inspect()).State.Pid;
  const bobCard = (await g.job(theirs.id)).gpus[0]!;
  fs.writeFileSync(path.join(SMI_DIR, 'apps.csv'), `${bobCard}, ${pid}, 14336\n`);
  // The docs' pictures show a few minutes of history rather than a few seconds.
  if (SHOTS) await sleep(90_000);

  const b = await openBrowser(t, g.url);
  const { page } = b;
  await signIn(b, g);

  // A running job's page: its GPU charts fill from the kept samples, then grow live over SSE.
  await page.goto(`${g.url}/ui/#/jobs/${train.id}`);
  await page.waitForSelector('#job-state [data-state="running"]');
  await page.waitForFunction(
    () => (document.querySelector('svg[data-chart="GPU utilisation"] path.line')?.getAttribute('d')?.match(/L/g) ?? []).length >= 3,
  );
  const samplesBefore = await leadingNumber(page, '[data-field="telemetry-summary"]');
  const pointsBefore = await linePoints(page, 'GPU utilisation');
  await page.waitForFunction(
    (n) => Number(/^\d+/.exec(document.querySelector('[data-field="telemetry-summary"]')?.textContent ?? '')?.[0]) >= n + 3,
    samplesBefore,
  );
  assert.ok((await linePoints(page, 'GPU utilisation')) > pointsBefore, 'the chart grows live, without a reload');
  for (const chart of ['GPU utilisation', 'GPU memory in use', 'GPU power']) {
    const svg = `svg[data-chart="${chart}"]`;
    assert.equal(await page.getAttribute(svg, 'role'), 'img', `${chart}: an image to assistive technology`);
    assert.match((await page.textContent(`${svg} desc`)) ?? '', /last .*peak .*mean /, `${chart}: its figures said in words`);
  }
  assert.match((await page.textContent('#spec')) ?? '', /"WANDB_API_KEY": "\(hidden\)"/, 'the env name shows, not its value');
  assert.ok(!(await markup(page)).includes(SECRET_ENV_VALUE), 'no env value on the job page');
  await picture(b, 'job-running');

  // A shared card's job: memory against what it declared.
  await page.goto(`${g.url}/ui/#/jobs/${theirs.id}`);
  await page.waitForSelector('svg[data-chart="GPU memory in use"] .ref-label');
  assert.equal(await page.textContent('svg[data-chart="GPU memory in use"] .ref-label'), 'declared 20,000 MiB');

  // The retried job: both attempts on the timeline and in words, with the cause of the first end.
  await page.goto(`${g.url}/ui/#/jobs/${flaky.id}`);
  await page.waitForSelector('#attempts li[data-attempt="2"]');
  const first = '#attempts li[data-attempt="1"]';
  assert.equal(await page.getAttribute(first, 'data-outcome'), 'failed');
  assert.equal((await page.textContent(`${first} [data-field="cause"]`))?.trim(), 'exit_code');
  assert.match((await page.textContent(first)) ?? '', /retried/);
  assert.match((await page.textContent(first)) ?? '', /exit 3/);
  assert.equal(await page.getAttribute('#attempts li[data-attempt="2"]', 'data-outcome'), 'succeeded');
  assert.match((await page.getAttribute('svg.timeline', 'aria-label')) ?? '', /attempt 1 failed .*attempt 2 succeeded/);
  assert.equal(await page.locator('#attempts [data-field="attempt-node"]').count(), 2, 'each attempt names its node');
  // Times read relative, the exact local instant in the tooltip.
  const times = await page.$$eval('main time', (els) =>
    els.map((e) => [e.textContent, e.getAttribute('title'), e.getAttribute('datetime')]),
  );
  assert.ok(times.length > 0);
  for (const [text, title, iso] of times) {
    assert.match(text ?? '', /^(now|in .+|.+ ago)$/, `"${text}" reads relative`);
    assert.equal(
      title,
      await page.evaluate((x) => new Date(x!).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'long' }), iso),
    );
  }
  await page.hover('#attempts time');
  await picture(b, 'job-attempts');

  // GPUs over time: each card's charts, with the jobs that held it marked and linked (an admin sees every owner's).
  await page.goto(`${g.url}/ui/#/gpus?hours=0.25`);
  await page.waitForSelector(`section[data-gpu="${UUID0}"] svg[data-chart="GPU 0 utilisation"]`);
  await page.waitForSelector(`li[data-holder="${train.id}"] a`);
  await page.waitForSelector(`li[data-holder="${theirs.id}"] a`);
  await page.waitForSelector(`li[data-holder="${flaky.id}"] a`);
  assert.ok((await linePoints(page, 'GPU 0 utilisation')) >= 3);
  assert.match((await page.textContent('#queue-history [data-field="queue-now"]')) ?? '', /^now 0 queued/);
  await picture(b, 'gpus');

  // The jobs end: their GPU time is counted.
  fs.writeFileSync(path.join(gate, 'open'), '');
  await airflow.waitFor(train.id);
  await bob.waitFor(theirs.id);

  // Usage: per owner and per team, as bars and a table; the CSV is what GET /v1/usage answers.
  await page.goto(`${g.url}/ui/#/usage?window=1d`);
  await page.waitForSelector('#usage-owners tr[data-owner="bob"]');
  assert.deepEqual(await page.$$eval('#usage-owners tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-owner')).sort()), [
    'airflow',
    'bob',
  ]);
  assert.ok(Number(await page.textContent('#usage-owners tr[data-owner="airflow"] [data-field="gpu-hours"]')) > 0);
  assert.deepEqual(await page.$$eval('#usage-teams tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-team'))), ['ml', 'research']);
  assert.equal(await page.getAttribute('svg[data-chart="GPU-hours per owner"]', 'role'), 'img');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#usage-csv')]);
  assert.equal(download.suggestedFilename(), 'gantry-usage.csv');
  const csv = fs.readFileSync((await download.path())!, 'utf8').split('\r\n');
  assert.match(csv[0]!, /^owner,/);
  assert.deepEqual(
    csv
      .slice(1, -1)
      .map((l) => l.split(',')[0])
      .sort(),
    ['airflow', 'bob'],
  );
  await picture(b, 'usage');

  // Audit (admin): each change, linked to the job or card it acted on; the filters narrow it.
  for (const action of ['drain', 'undrain']) assert.equal((await g.call('POST', `/v1/gpus/${UUID1}/${action}`)).status, 200);
  await page.goto(`${g.url}/ui/#/audit`);
  await page.waitForSelector(`#audit-body tr[data-action="job.submit"] a[data-job="${train.id}"]`);
  assert.equal(await page.getAttribute(`a[data-job="${train.id}"]`, 'href'), `#/jobs/${train.id}`);
  assert.equal(await page.getAttribute('#audit-body tr[data-action="gpu.drain"] [data-field="target"] a', 'href'), `#/gpus?gpu=${UUID1}`);
  await picture(b, 'audit');
  await page.fill('#audit-actor', 'bob');
  await page.click('#audit-apply');
  await page.waitForFunction(() => [...document.querySelectorAll('#audit-body tbody tr')].length === 1);
  assert.match((await page.textContent('#audit-body tbody tr')) ?? '', /bob/);
  const weight = firstLoadWeight(b);

  // A token that is no admin's: its own jobs and team only, no audit, no env value anywhere.
  await page.click('#signout');
  await page.waitForSelector('#login');
  await signIn(b, g, SUBMITTER_TOKEN);
  assert.equal(await page.isHidden('#nav-audit'), true, 'no audit link');
  const views: [string, string][] = [
    ['#/', `#recent tr[data-job="${train.id}"]`],
    [`#/jobs/${train.id}`, '#spec'],
    ['#/gpus?hours=0.25', `li[data-holder="${train.id}"]`],
    ['#/usage?window=1d', '#usage-owners tr[data-owner="airflow"]'],
    ['#/audit', '#audit-body .error'],
  ];
  for (const [hash, ready] of views) {
    await page.goto(`${g.url}/ui/${hash}`);
    await page.waitForSelector(ready);
    const html = await markup(page);
    for (const never of [theirs.id, 'bob-finetune', SECRET_ENV_VALUE, OTHER_OWNER_TOKEN, SUBMITTER_TOKEN])
      assert.ok(!html.includes(never), `${hash} shows no "${never}"`);
  }
  assert.match((await page.textContent('#audit-body')) ?? '', /admin tokens only/);
  await page.goto(`${g.url}/ui/#/gpus?hours=0.25`);
  await page.waitForSelector('li[data-holder="hidden"]');
  assert.equal(await page.textContent('li[data-holder="hidden"] span'), "another owner's job");
  await picture(b, 'gpus-not-admin');
  await page.goto(`${g.url}/ui/#/usage?window=1d`);
  await page.waitForSelector('#usage-teams tr[data-team="ml"]');
  assert.deepEqual(await page.$$eval('#usage-owners tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-owner'))), ['airflow']);
  assert.deepEqual(await page.$$eval('#usage-teams tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-team'))), ['ml']);
  await page.goto(`${g.url}/ui/#/jobs/${theirs.id}`);
  await page.waitForSelector('h1:has-text("Job not found")');
  // The API the page reads answers so too, whatever a page would draw of it.
  assert.equal((await airflow.call('GET', `/v1/jobs/${theirs.id}/telemetry`)).status, 404);
  const cardsSeen = await airflow.call('GET', '/v1/gpus/history?hours=1');
  assert.ok(cardsSeen.text.includes(train.id) && !cardsSeen.text.includes(theirs.id) && !cardsSeen.text.includes('"bob"'));
  assertStayedHome(b, g, /status of 403|status of 404/);
  t.diagnostic(`first load: ${weight}`);
});

/** The bytes on the wire of the page's own files, as the first load (a cold cache) fetched them. */
function firstLoadWeight(b: Browser): string {
  const seen = new Map<string, number>();
  for (const x of b.transfers) if (new URL(x.url).pathname.startsWith('/ui/') && !seen.has(x.url)) seen.set(x.url, x.bytes);
  const total = [...seen.values()].reduce((a, n) => a + n, 0);
  assert.ok(total > 0);
  return `${seen.size} files, ${total} bytes`;
}

test('UI: times read relative and in words ("in 23 h 59 min"); a reason’s ISO instant is shown so, exact on hover', async (t) => {
  const gate = tempDir('gantry-gate-');
  const g = await gantry(t, gate);
  const b = await openBrowser(t, g.url);
  await signIn(b, g);
  // Written without named inner functions: the page runs the callback's source as given.
  const said = await b.page.evaluate(async (now) => {
    const f = await import('/ui/js/format.js' as string);
    const parts = f.prose('expected free by 2026-12-08T03:08:34.796Z at the latest');
    return {
      relative: [86_370_000, -300_000, 200, 3 * 86_400_000 + 4 * 3_600_000].map((ms) => f.relative(new Date(now + ms).toISOString(), now)),
      prose: [parts[0], parts[1].tagName, parts[1].getAttribute('datetime'), parts[1].getAttribute('title'), parts[2]],
      title: f.proseTitle('expected free by 2026-12-08T03:08:34.796Z at the latest'),
    };
  }, Date.parse('2026-12-07T03:09:00.000Z'));
  assert.deepEqual(said.relative, ['in 23 h 59 min', '5 min ago', 'now', 'in 3 d 4 h']);
  const exact = await b.page.evaluate(
    (iso) => new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'long' }),
    '2026-12-08T03:08:34.796Z',
  );
  assert.deepEqual(said.prose, ['expected free by ', 'TIME', '2026-12-08T03:08:34.796Z', exact, ' at the latest']);
  assert.equal(said.title, `expected free by ${exact} at the latest`, 'and a tooltip of the whole reason reads the instant so too');
  assertStayedHome(b, g);
});
