import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { GpuAllocator } from '../../src/gpu/allocator.js';
import { KernelLogReader } from '../../src/gpu/health/kernel-log.js';
import { HealthMonitor, MISSES_BEFORE_NO_ANSWER, readingFaults } from '../../src/gpu/health/monitor.js';
import { HEALTH_QUERY, parseHealthCsv, parseRemapCsv, REMAP_QUERY } from '../../src/gpu/health/smi-health.js';
import { type DeviceFault, GpuHealthBook } from '../../src/gpu/health/state.js';
import { kmsgMessage, parseXidLine, pciKey } from '../../src/gpu/health/xid.js';
import { parseNvidiaSmiCsv } from '../../src/gpu/inventory.js';
import { planQueue } from '../../src/scheduling/plan.js';
import { ROOT, tempDir } from '../helpers/gantry.js';

const DIR = path.join(ROOT, 'test/fixtures/nvidia-smi/h200-health');
const fixture = (name: string) => fs.readFileSync(path.join(DIR, name), 'utf8');
const CARDS = parseNvidiaSmiCsv(fs.readFileSync(path.join(ROOT, 'test/fixtures/nvidia-smi/h200-x2/gantry-query.csv'), 'utf8')).map(
  ({ busId: _, ...d }) => d,
);
const [U0, U1] = CARDS.map((d) => d.uuid) as [string, string];
const quiet = { info() {}, warn() {} };
/** GANTRY_GPU_APP_XIDS as it is unset: the device plugin's application Xids. */
const DEFAULT_APP_XIDS = loadConfig({}).gpus.health.appXids;

function memoryRecords() {
  const m = new Map<string, string>();
  return { m, get: async (k: string) => m.get(k), set: async (k: string, v: string) => void m.set(k, v) };
}

test('the health queries as recorded on the lent H200: the healthy card parses to no fault', () => {
  const dir = path.join(import.meta.dirname, '..', 'fixtures', 'nvidia-smi', 'h200-e2e');
  const [card] = parseHealthCsv(fs.readFileSync(path.join(dir, 'health-query.csv'), 'utf8'));
  assert.deepEqual(card, {
    uuid: 'GPU-146ed5d6-4bbe-9426-bc86-d79f8cee3640',
    busId: '00000000:00:06.0',
    eccUncorrected: 0,
    retirementPending: null,
  });
  const remap = parseRemapCsv(fs.readFileSync(path.join(dir, 'remapped-rows.csv'), 'utf8'));
  assert.deepEqual([...remap], [['GPU-146ed5d6-4bbe-9426-bc86-d79f8cee3640', false]]);
  assert.deepEqual(readingFaults(card!, remap.get(card!.uuid) ?? null), []);
});

test('the health query on healthy H200s: no ECC errors, retired pages [N/A] (Hopper remaps rows instead), nothing to report', () => {
  const readings = parseHealthCsv(fixture('health-query.csv'));
  assert.deepEqual(readings, [
    { uuid: U0, busId: '00000000:00:06.0', eccUncorrected: 0, retirementPending: null },
    { uuid: U1, busId: '00000000:00:07.0', eccUncorrected: 0, retirementPending: null },
  ]);
  const remap = parseRemapCsv(fixture('remapped-rows.csv'));
  assert.deepEqual(
    [...remap],
    [
      [U0, false],
      [U1, false],
    ],
  );
  for (const r of readings) assert.deepEqual(readingFaults(r, remap.get(r.uuid) ?? null), []);
  assert.equal(HEALTH_QUERY, 'uuid,pci.bus_id,ecc.errors.uncorrected.volatile.total,retired_pages.pending');
  assert.equal(REMAP_QUERY, 'gpu_uuid,remapped_rows.failure');
});

test('volatile uncorrectable ECC errors and a failed row remapper are device faults', () => {
  const [, ecc] = parseHealthCsv(fixture('health-query-ecc.csv'));
  assert.deepEqual(
    readingFaults(ecc!, null).map((f) => f.code),
    ['ecc_uncorrected'],
  );
  assert.match(readingFaults(ecc!, null)[0]!.reason, /^2 uncorrectable ECC error\(s\)/);
  const remap = parseRemapCsv(fixture('remapped-rows-failure.csv'));
  assert.equal(remap.get(U1), true);
  const [, healthy] = parseHealthCsv(fixture('health-query.csv'));
  assert.deepEqual(
    readingFaults(healthy!, remap.get(U1)!).map((f) => f.code),
    ['row_remap_failure'],
  );
  // A pre-Ampere card with a page waiting to be retired.
  const [old] = parseHealthCsv('GPU-00000000-1111-2222-3333-444444444444, 00000000:3B:00.0, 0, Yes\n');
  assert.deepEqual(
    readingFaults(old!, null).map((f) => f.code),
    ['retirement_pending'],
  );
});

test('[N/A], [Not Supported] and other no-values are no reading, never zero or a fault', () => {
  const [r] = parseHealthCsv('GPU-00000000-1111-2222-3333-444444444444, 00000000:01:00.0, [N/A], [Not Supported]\n');
  assert.deepEqual([r!.eccUncorrected, r!.retirementPending], [null, null]);
  assert.equal(parseRemapCsv('GPU-00000000-1111-2222-3333-444444444444, [N/A]\n').get('GPU-00000000-1111-2222-3333-444444444444'), null);
  assert.deepEqual(readingFaults(r!, null), []);
});

test('a card that stopped answering is missing from the answer; the warning line is not a card', () => {
  const text = `${fixture('health-query-card1-lost.stderr')}${fixture('health-query-card1-lost.csv')}`;
  assert.deepEqual(
    parseHealthCsv(text).map((r) => r.uuid),
    [U0],
  );
});

test('Xid lines: the card by PCI address, the number, the blamed process and the driver text', () => {
  const x79 = parseXidLine(kmsgMessage(fixture('kmsg-xid79.txt').trim())!);
  assert.deepEqual(x79, { pci: '0000:00:07', xid: 79, pid: null, process: null, text: 'GPU has fallen off the bus.' });
  assert.equal(x79!.pci, pciKey('00000000:00:07.0'), 'the kernel log and nvidia-smi name the card alike');
  const x48 = parseXidLine(kmsgMessage(fixture('kmsg-xid48.txt').trim())!);
  assert.deepEqual([x48!.xid, x48!.text.slice(0, 35)], [48, 'An uncorrectable double bit error (']);
  const x63 = parseXidLine(kmsgMessage(fixture('kmsg-xid63.txt').trim())!);
  assert.deepEqual([x63!.xid, x63!.pid, x63!.process], [63, 2811, 'python3']);
  assert.equal(parseXidLine(kmsgMessage(fixture('kmsg-xid64.txt').trim())!)!.xid, 64);
  const x13 = parseXidLine(kmsgMessage(fixture('kmsg-xid13.txt').trim())!);
  assert.deepEqual([x13!.pci, x13!.xid, x13!.pid, x13!.process], ['0000:00:06', 13, 4321, 'python3']);
  assert.ok(DEFAULT_APP_XIDS.includes(13) && !DEFAULT_APP_XIDS.includes(79));
  // Older drivers: no pid or name; dmesg's timestamp prefix; other kernel lines are not Xids.
  assert.deepEqual(parseXidLine('[ 1399.140323] NVRM: Xid (PCI:0000:01:00): 32, Channel ID 00000009 intr 00800000'), {
    pci: '0000:01:00',
    xid: 32,
    pid: null,
    process: null,
    text: 'Channel ID 00000009 intr 00800000',
  });
  assert.equal(parseXidLine('NVRM: GPU at PCI:0000:01:00: GPU-34d7319c-5b19-1e75-186d-c187099e4fe5'), null);
  assert.equal(kmsgMessage(' SUBSYSTEM=pci'), null, 'a continuation line of a record is no message');
});

test('the health book: a fault makes a card unhealthy once, drain and undrain, and both outlive a restart', async () => {
  const records = memoryRecords();
  const book = new GpuHealthBook(CARDS, records, quiet);
  const heard: [string, DeviceFault][] = [];
  book.onFault((uuid, f) => heard.push([uuid, f]));
  assert.equal(await book.fault(U1, { code: 'xid_79', reason: 'Xid 79: GPU has fallen off the bus.' }), true);
  assert.equal(await book.fault(U1, { code: 'xid_79', reason: 'again' }), false, 'the same fault again is no news');
  assert.equal(heard.length, 1);
  assert.deepEqual([book.get(U1).state, book.get(U1).code], ['unhealthy', 'xid_79']);
  assert.match(book.withheld(U1)!, /^unhealthy: Xid 79/);
  assert.equal(book.withheld(U0), null);
  await book.drain(U0, 'alice', 'reseating');
  assert.deepEqual([book.get(U0).state, book.get(U0).by, book.get(U0).reason], ['drained', 'alice', 'reseating']);
  await book.drain(U1, 'alice', undefined);
  assert.equal(book.get(U1).state, 'unhealthy', 'draining an unhealthy card keeps its fault');

  const after = new GpuHealthBook(CARDS, records, quiet);
  await after.load();
  assert.deepEqual(after.get(U1), book.get(U1));
  assert.deepEqual(after.get(U0), book.get(U0));
  await after.undrain(U1);
  assert.equal(after.get(U1).state, 'healthy');
  const again = new GpuHealthBook(CARDS, records, quiet);
  await again.load();
  assert.equal(again.get(U1).state, 'healthy');
  assert.deepEqual(
    [...book.faultCounts()].map((c) => [c.uuid, c.code, c.class, c.n]),
    [[U1, 'xid_79', 'device', 1]],
  );
  // A record that is not one (hand-edited, or written by a newer Gantry) leaves its card healthy, and the start goes on.
  records.m.set(`gpu-health:${U0}`, '{not json');
  records.m.set(`gpu-health:${U1}`, '{"state":"on-fire"}');
  const warned: string[] = [];
  const odd = new GpuHealthBook(CARDS, records, { warn: (_o: object, msg: string) => warned.push(msg) });
  await odd.load();
  assert.deepEqual([odd.get(U0).state, odd.get(U1).state, warned.length], ['healthy', 'healthy', 2]);
});

test('the allocator gives no new job a card out of service, but a request for it still fits the host and says what it waits for', async () => {
  const book = new GpuHealthBook(CARDS, memoryRecords(), quiet);
  const gpus = new GpuAllocator(CARDS);
  gpus.withhold((u) => book.withheld(u));
  await book.fault(U0, { code: 'xid_79', reason: 'Xid 79: GPU has fallen off the bus.' });
  assert.deepEqual(gpus.tryAllocate('a', { count: 1 })?.uuids, [U1], 'the healthy card, not the first');
  gpus.release('a');
  assert.equal(gpus.tryAllocate('b', { count: 2 }), null);
  assert.equal(gpus.impossible({ count: 2 }), null, 'not impossible: the card may come back');
  assert.deepEqual(gpus.outOfService('b', { count: 2 }), {
    code: 'gpus_out_of_service',
    text: 'waiting for GPUs out of service to come back: GPU 0 (unhealthy: Xid 79: GPU has fallen off the bus.)',
    estimatedStartAt: null,
  });
  assert.equal(gpus.outOfService('b', { count: 1 }), null, 'one card in service could run it: it waits for jobs, not for health');
  assert.equal(gpus.tryAllocate('c', { ids: ['0'] }), null);
  assert.equal(gpus.tryAllocate('d', { count: 1, memoryMiB: 1000 })?.uuids[0], U1);
  assert.equal(gpus.clone().tryAllocate('e', { ids: [U0] }), null, 'a copy withholds the same cards');
  await book.undrain(U0);
  assert.deepEqual(gpus.tryAllocate('f', { ids: ['0'] })?.uuids, [U0]);
});

/** An nvidia-smi on disk that answers each query from the file of the same name in `dir`, as the recorded tool would. */
function fakeSmi(dir: string): string {
  const smi = path.join(dir, 'nvidia-smi');
  fs.writeFileSync(
    smi,
    '#!/bin/sh\n' +
      `case "$1" in --query-gpu=*) f=health;; --query-remapped-rows=*) f=remap;; *) exit 2;; esac\n` +
      `[ -f ${dir}/$f.stderr ] && cat ${dir}/$f.stderr >&2\n` +
      `cat ${dir}/$f.csv\n` +
      `[ -f ${dir}/$f.exit ] && exit $(cat ${dir}/$f.exit)\nexit 0\n`,
  );
  fs.chmodSync(smi, 0o755);
  return smi;
}

test('the monitor: nvidia-smi readings and kernel-log Xids on the recorded cards make the right card unhealthy; app Xids only count', async () => {
  const dir = tempDir('gantry-health-');
  const smi = fakeSmi(dir);
  const kmsg = path.join(dir, 'kmsg');
  fs.copyFileSync(path.join(DIR, 'health-query.csv'), path.join(dir, 'health.csv'));
  fs.copyFileSync(path.join(DIR, 'remapped-rows.csv'), path.join(dir, 'remap.csv'));
  // A record already in the log when it is opened predates this process: passed over.
  fs.writeFileSync(kmsg, fixture('kmsg-xid48.txt'));
  const book = new GpuHealthBook(CARDS, memoryRecords(), quiet);
  const appXids: number[] = [];
  const monitor = new HealthMonitor({
    health: book,
    intervalMs: 60_000,
    nvidiaSmi: smi,
    kernelLog: new KernelLogReader(kmsg),
    appXids: new Set(DEFAULT_APP_XIDS),
    log: quiet,
    onApplicationXid: (uuid, e) => uuid === U0 && appXids.push(e.xid),
  });
  await monitor.tick();
  assert.deepEqual([book.get(U0).state, book.get(U1).state], ['healthy', 'healthy']);

  fs.appendFileSync(kmsg, fixture('kmsg-xid13.txt'));
  await monitor.tick();
  assert.deepEqual(appXids, [13]);
  assert.equal(book.get(U0).state, 'healthy', 'an application Xid leaves the card in service');

  fs.appendFileSync(kmsg, fixture('kmsg-xid79.txt'));
  await monitor.tick();
  assert.deepEqual([book.get(U0).state, book.get(U1).state, book.get(U1).code], ['healthy', 'unhealthy', 'xid_79']);
  assert.equal(book.get(U1).reason, 'Xid 79: GPU has fallen off the bus.');
  await book.undrain(U1);

  fs.copyFileSync(path.join(DIR, 'health-query-ecc.csv'), path.join(dir, 'health.csv'));
  await monitor.tick();
  assert.deepEqual([book.get(U1).state, book.get(U1).code], ['unhealthy', 'ecc_uncorrected']);
  await book.undrain(U1);
  fs.copyFileSync(path.join(DIR, 'health-query.csv'), path.join(dir, 'health.csv'));
  fs.copyFileSync(path.join(DIR, 'remapped-rows-failure.csv'), path.join(dir, 'remap.csv'));
  await monitor.tick();
  assert.deepEqual([book.get(U1).state, book.get(U1).code], ['unhealthy', 'row_remap_failure']);
  assert.equal(book.get(U0).state, 'healthy');
  await monitor.stop();
  assert.deepEqual([...book.faultCounts()].map((c) => `${c.uuid === U0 ? 0 : 1}:${c.code}:${c.class}`).sort(), [
    '0:xid_13:application',
    '1:ecc_uncorrected:device',
    '1:row_remap_failure:device',
    '1:xid_79:device',
  ]);
});

test('the monitor: a card nvidia-smi stops answering for is unhealthy after two polls; an nvidia-smi that fails counts a miss for every card', async () => {
  const dir = tempDir('gantry-health-');
  const smi = fakeSmi(dir);
  fs.copyFileSync(path.join(DIR, 'health-query.csv'), path.join(dir, 'health.csv'));
  fs.copyFileSync(path.join(DIR, 'remapped-rows.csv'), path.join(dir, 'remap.csv'));
  const book = new GpuHealthBook(CARDS, memoryRecords(), quiet);
  const monitor = new HealthMonitor({ health: book, intervalMs: 60_000, nvidiaSmi: smi, kernelLog: null, appXids: new Set(), log: quiet });
  await monitor.tick();
  fs.copyFileSync(path.join(DIR, 'health-query-card1-lost.csv'), path.join(dir, 'health.csv'));
  fs.copyFileSync(path.join(DIR, 'health-query-card1-lost.stderr'), path.join(dir, 'health.stderr'));
  fs.writeFileSync(path.join(dir, 'health.exit'), '15');
  for (let i = 1; i < MISSES_BEFORE_NO_ANSWER; i++) await monitor.tick();
  assert.equal(book.get(U1).state, 'healthy', 'one poll without it is not yet a lost card');
  await monitor.tick();
  assert.deepEqual([book.get(U0).state, book.get(U1).state, book.get(U1).code], ['healthy', 'unhealthy', 'no_answer']);
  assert.match(book.get(U1).reason!, /stopped answering: nvidia-smi no longer lists it \(2 polls in a row\)/);

  // nvidia-smi itself fails for every card (the driver is gone): each card it answered for before counts a miss.
  fs.writeFileSync(path.join(dir, 'health.csv'), '');
  fs.writeFileSync(path.join(dir, 'health.stderr'), "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n");
  fs.writeFileSync(path.join(dir, 'health.exit'), '9');
  await monitor.tick();
  await monitor.tick();
  assert.equal(book.get(U0).code, 'no_answer');
  assert.match(book.get(U0).reason!, /nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate/);
  await monitor.stop();
});

test('the monitor: without nvidia-smi, or for cards it never listed (a static inventory), nothing is condemned', async () => {
  const book = new GpuHealthBook([{ index: 0, uuid: 'GPU-static-0', name: 'static', memoryMiB: 1000 }], memoryRecords(), quiet);
  const absent = new HealthMonitor({
    health: book,
    intervalMs: 60_000,
    nvidiaSmi: path.join(tempDir('gantry-no-smi-'), 'nvidia-smi'),
    kernelLog: new KernelLogReader(path.join(tempDir('gantry-no-kmsg-'), 'kmsg')),
    appXids: new Set(),
    log: quiet,
  });
  for (let i = 0; i < 3; i++) await absent.tick();
  const dir = tempDir('gantry-health-');
  fs.copyFileSync(path.join(DIR, 'health-query.csv'), path.join(dir, 'health.csv'));
  fs.copyFileSync(path.join(DIR, 'remapped-rows.csv'), path.join(dir, 'remap.csv'));
  const other = new HealthMonitor({
    health: book,
    intervalMs: 60_000,
    nvidiaSmi: fakeSmi(dir),
    kernelLog: null,
    appXids: new Set(),
    log: quiet,
  });
  for (let i = 0; i < 3; i++) await other.tick();
  assert.equal(book.get('GPU-static-0').state, 'healthy');
});

test('a job only cards out of service could run waits without holding the GPU reservation: the jobs behind it still start', async () => {
  const book = new GpuHealthBook(CARDS, memoryRecords(), quiet);
  const gpus = new GpuAllocator(CARDS);
  gpus.withhold((u) => book.withheld(u));
  await book.fault(U1, { code: 'xid_79', reason: 'Xid 79: GPU has fallen off the bus.' });
  const entry = (id: string, req: { ids?: string[]; count?: number }) => ({ id, owner: 'o', gpus: req, timeoutSeconds: 60 });
  const plan = planQueue({
    queue: () => [entry('wants-1', { ids: ['1'] }), entry('any', { count: 1 })],
    limits: null,
    gpus,
    freeSlots: 4,
    maxRunning: 4,
    running: [],
    now: Date.now(),
  });
  assert.deepEqual(
    plan.decisions.map((d) => [d.id, d.action, d.action === 'wait' ? d.wait.code : d.alloc?.uuids]),
    [
      ['wants-1', 'wait', 'gpus_out_of_service'],
      ['any', 'start', [U0]],
    ],
  );
});

test('the monitor: a look that fails is logged and the next one runs', async () => {
  const dir = tempDir('gantry-health-');
  fs.copyFileSync(path.join(DIR, 'health-query-ecc.csv'), path.join(dir, 'health.csv'));
  fs.copyFileSync(path.join(DIR, 'remapped-rows.csv'), path.join(dir, 'remap.csv'));
  const book = new GpuHealthBook(CARDS, memoryRecords(), quiet);
  book.onFault(() => {
    throw new Error('a listener that throws');
  });
  const warned: string[] = [];
  const log = { info() {}, warn: (_o: object, msg: string) => warned.push(msg) };
  const monitor = new HealthMonitor({
    health: book,
    intervalMs: 60_000,
    nvidiaSmi: fakeSmi(dir),
    kernelLog: null,
    appXids: new Set(),
    log,
  });
  await monitor.tick();
  assert.deepEqual(warned, ['GPU health: a look at the cards failed']);
  assert.equal(book.get(U1).code, 'ecc_uncorrected', 'the card is out of service all the same');
  await monitor.tick();
});

test('the monitor: an nvidia-smi that does not exit even when killed (stuck in the driver) is given up on, not waited for, and no second one is started', async () => {
  // A process stuck in the driver ignores even SIGKILL; no test can make one, so the run is a promise that settles only when told.
  const answers = { health: fixture('health-query.csv'), remap: fixture('remapped-rows.csv') };
  let runs = 0;
  let hang = false;
  let release = () => {};
  const runCommand = async (_file: string, args: string[]) => {
    runs++;
    if (hang) await new Promise<void>((resolve) => (release = resolve));
    return { stdout: args[0]!.startsWith('--query-gpu=') ? answers.health : answers.remap };
  };
  const book = new GpuHealthBook(CARDS, memoryRecords(), quiet);
  const monitor = new HealthMonitor({
    health: book,
    intervalMs: 60_000,
    nvidiaSmi: 'nvidia-smi',
    kernelLog: null,
    appXids: new Set(),
    log: quiet,
    smiTimeoutMs: 200,
    runCommand,
  });
  await monitor.tick();
  assert.equal(runs, 2, 'the two queries');
  hang = true;
  const started = Date.now();
  await monitor.tick();
  assert.ok(Date.now() - started < 2000, 'the poll gave up on it a second after its deadline');
  assert.equal(book.get(U0).state, 'healthy', 'one poll without an answer is not yet a lost card');
  await monitor.tick();
  assert.equal(runs, 3, 'no nvidia-smi was started while one had not exited');
  assert.deepEqual([book.get(U0).code, book.get(U1).code], ['no_answer', 'no_answer']);
  assert.match(book.get(U0).reason!, /an nvidia-smi started \d+ s ago has not exited \(2 polls in a row\)/);
  // Once it exits, polls run again.
  hang = false;
  release();
  await new Promise((r) => setImmediate(r));
  await monitor.tick();
  assert.equal(runs, 5);
});
