import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { JobTelemetry, type TelemetryPolicy } from '../../src/gpu/telemetry/accumulator.js';
import { type CardSample, parseCardSamples, parseComputeApps } from '../../src/gpu/telemetry/nvidia-smi.js';

const FIXTURES = path.resolve(import.meta.dirname, '..', 'fixtures', 'nvidia-smi', 'telemetry');
const A = 'GPU-bf882557-d398-ec5a-a348-119f2369fb41';
const B = 'GPU-aa694fa2-111c-4524-7ac7-efa2ec117766';
const OFF: TelemetryPolicy = { idleMinutes: 0, idleAction: 'warn', memoryExceededAction: 'warn' };
const T0 = Date.parse('2026-12-02T10:00:00.000Z');

test('the card query parses, and [N/A] / [Not Supported] are no value rather than zero', () => {
  const cards = parseCardSamples(fs.readFileSync(path.join(FIXTURES, 'card-query.csv'), 'utf8'));
  assert.deepEqual(cards, [
    { uuid: A, utilizationPct: 100, memoryUsedMiB: 71234, powerWatts: 652.18 },
    { uuid: B, utilizationPct: 0, memoryUsedMiB: 0, powerWatts: 81.5 },
    { uuid: 'GPU-c70e87bb-33ec-dd9d-b75a-d3f9e151edb9', utilizationPct: null, memoryUsedMiB: 1024, powerWatts: null },
  ]);
  assert.throws(() => parseCardSamples('No devices were found'), /unexpected nvidia-smi line/);
});

test('the two queries as recorded on the lent H200, idle: one card at 0%, no compute process', () => {
  assert.deepEqual(parseCardSamples(fs.readFileSync(path.join(FIXTURES, 'h200-card-query-recorded.csv'), 'utf8')), [
    { uuid: 'GPU-38ffc750-dec8-610d-e953-c4d193af289d', utilizationPct: 0, memoryUsedMiB: 0, powerWatts: 84.31 },
  ]);
  assert.deepEqual(parseComputeApps(fs.readFileSync(path.join(FIXTURES, 'h200-compute-apps-recorded.csv'), 'utf8')), []);
});

test('the compute-apps query parses host PIDs; no process is an empty answer', () => {
  const apps = parseComputeApps(fs.readFileSync(path.join(FIXTURES, 'compute-apps.csv'), 'utf8'));
  assert.deepEqual(apps, [
    { gpuUuid: A, pid: 48211, usedMemoryMiB: 71224 },
    { gpuUuid: 'GPU-c70e87bb-33ec-dd9d-b75a-d3f9e151edb9', pid: 48390, usedMemoryMiB: 512 },
    { gpuUuid: 'GPU-c70e87bb-33ec-dd9d-b75a-d3f9e151edb9', pid: 48512, usedMemoryMiB: null },
  ]);
  assert.deepEqual(parseComputeApps(''), []);
  assert.deepEqual(parseComputeApps('No running processes found\n'), []);
  assert.throws(() => parseComputeApps(`${A}, [N/A], 10`), /unexpected nvidia-smi compute-apps line/);
});

const card = (uuid: string, utilizationPct: number | null, memoryUsedMiB: number | null, powerWatts: number | null): CardSample => ({
  uuid,
  utilizationPct,
  memoryUsedMiB,
  powerWatts,
});

test('an exclusive job: mean and peak utilisation, peak memory over its cards, energy from power over time', () => {
  const t = new JobTelemetry({ attempt: 1, startedAtMs: T0, cards: 2, declaredMemoryMiB: null }, OFF);
  const at = (s: number) => T0 + s * 1000;
  // Two cards; power 300 W + 100 W for the first 10 s (counted from the start), then 500 + 100.
  t.add(at(10), [
    { uuid: A, card: card(A, 80, 1000, 300), jobMemoryMiB: 1000 },
    { uuid: B, card: card(B, 40, 2000, 100), jobMemoryMiB: 2000 },
  ]);
  const v = t.add(at(20), [
    { uuid: A, card: card(A, 100, 5000, 500), jobMemoryMiB: 5000 },
    { uuid: B, card: card(B, 60, 1000, 100), jobMemoryMiB: 1000 },
  ]);
  assert.deepEqual(v.warnings, []);
  assert.equal(v.end, null);
  const s = t.summary();
  assert.equal(s.samples, 2);
  assert.equal(s.meanUtilizationPct, 70); // (60 + 80) / 2
  assert.equal(s.peakUtilizationPct, 100);
  assert.equal(s.peakMemoryMiB, 6000);
  // 400 W × 10 s, then the trapezoid (400 + 600) / 2 × 10 s.
  assert.equal(s.energyJoules, 4000 + 5000);
  assert.equal(s.gpuSeconds, 40);
  assert.equal(s.sharedCard, false);
  assert.equal(s.firstSampleAt, new Date(at(10)).toISOString());
});

test('a sample without a power reading adds no energy and does not break the trapezoids', () => {
  const t = new JobTelemetry({ attempt: 1, startedAtMs: T0, cards: 1, declaredMemoryMiB: null }, OFF);
  t.add(T0 + 1000, [{ uuid: A, card: card(A, 50, 10, 100), jobMemoryMiB: 10 }]);
  t.add(T0 + 2000, [{ uuid: A, card: card(A, null, 10, null), jobMemoryMiB: 10 }]);
  t.add(T0 + 3000, [{ uuid: A, card: card(A, 50, 10, 100), jobMemoryMiB: 10 }]);
  const s = t.summary();
  assert.equal(s.energyJoules, 100 + 100); // the first second, then the last (from the sample with power, 1 s before)
  assert.equal(s.meanUtilizationPct, 50);
});

test('a sharing job: only its own memory is counted; utilisation, power and energy are null, not the card’s', () => {
  const t = new JobTelemetry({ attempt: 2, startedAtMs: T0, cards: 1, declaredMemoryMiB: 4096 }, OFF);
  const v = t.add(T0 + 5000, [{ uuid: A, card: card(A, 97, 60000, 650), jobMemoryMiB: 3000 }]);
  assert.deepEqual(v.cards, [{ uuid: A, utilizationPct: null, memoryUsedMiB: 3000, powerWatts: null }]);
  const s = t.summary();
  assert.equal(s.sharedCard, true);
  assert.equal(s.attempt, 2);
  assert.equal(s.meanUtilizationPct, null);
  assert.equal(s.peakUtilizationPct, null);
  assert.equal(s.energyJoules, null);
  assert.equal(s.peakMemoryMiB, 3000);
  assert.equal(s.overDeclaredMemory, false);
});

test('memory over the declared share: one warning, and an end with cause memory_exceeded when the policy says end', () => {
  for (const action of ['warn', 'end'] as const) {
    const t = new JobTelemetry(
      { attempt: 1, startedAtMs: T0, cards: 1, declaredMemoryMiB: 4096 },
      { ...OFF, memoryExceededAction: action },
    );
    const v1 = t.add(T0 + 1000, [{ uuid: A, card: card(A, 90, 60000, 600), jobMemoryMiB: 5000 }]);
    assert.equal(v1.warnings.length, 1);
    assert.equal(v1.warnings[0]!.kind, 'memory_exceeded');
    assert.equal(v1.warnings[0]!.action, action);
    assert.match(v1.warnings[0]!.message, /5000 MiB of shared GPU GPU-bf882557.*4096 MiB it declared/);
    assert.equal(v1.end?.cause, action === 'end' ? 'memory_exceeded' : undefined);
    const v2 = t.add(T0 + 2000, [{ uuid: A, card: card(A, 90, 60000, 600), jobMemoryMiB: 6000 }]);
    assert.deepEqual(v2.warnings, [], 'warned once');
    assert.equal(t.summary().overDeclaredMemory, true);
    assert.equal(t.summary().warnings.length, 1);
  }
});

test('idle: warned once after N minutes at ≤5%, again only after the card worked in between; end when the policy says so', () => {
  const policy: TelemetryPolicy = { idleMinutes: 1, idleAction: 'warn', memoryExceededAction: 'warn' };
  const t = new JobTelemetry({ attempt: 1, startedAtMs: T0, cards: 1, declaredMemoryMiB: null }, policy);
  const idle = (s: number, u = 0) => t.add(T0 + s * 1000, [{ uuid: A, card: card(A, u, 500, 80), jobMemoryMiB: 500 }]);
  assert.deepEqual(idle(10).warnings, []);
  assert.deepEqual(idle(50, 5).warnings, []);
  const w = idle(70).warnings;
  assert.equal(w.length, 1);
  assert.equal(w[0]!.kind, 'idle');
  assert.match(w[0]!.message, /at most 5% utilised for 1\.0 minutes/);
  assert.deepEqual(idle(200).warnings, [], 'once per idle stretch');
  idle(210, 40); // worked
  assert.deepEqual(idle(220).warnings, []);
  assert.equal(idle(280).warnings.length, 1);

  const ending = new JobTelemetry({ attempt: 1, startedAtMs: T0, cards: 1, declaredMemoryMiB: null }, { ...policy, idleAction: 'end' });
  ending.add(T0, [{ uuid: A, card: card(A, 0, 500, 80), jobMemoryMiB: 500 }]);
  const v = ending.add(T0 + 61_000, [{ uuid: A, card: card(A, 0, 500, 80), jobMemoryMiB: 500 }]);
  assert.equal(v.end?.cause, 'idle');
  assert.match(v.end!.reason, /GANTRY_GPU_IDLE_MINUTES=1/);
});

test('idle is judged by the card even for a sharing job (a card at 0% means none of its jobs computes); unknown utilisation is never idle', () => {
  const policy: TelemetryPolicy = { idleMinutes: 0.5, idleAction: 'end', memoryExceededAction: 'warn' };
  const shared = new JobTelemetry({ attempt: 1, startedAtMs: T0, cards: 1, declaredMemoryMiB: 1000 }, policy);
  shared.add(T0, [{ uuid: A, card: card(A, 1, 500, 80), jobMemoryMiB: 100 }]);
  assert.equal(shared.add(T0 + 30_000, [{ uuid: A, card: card(A, 0, 500, 80), jobMemoryMiB: 100 }]).end?.cause, 'idle');
  const unknown = new JobTelemetry({ attempt: 1, startedAtMs: T0, cards: 1, declaredMemoryMiB: null }, policy);
  unknown.add(T0, [{ uuid: A, card: card(A, null, 500, null), jobMemoryMiB: 500 }]);
  assert.equal(unknown.add(T0 + 60_000, [{ uuid: A, card: card(A, null, 500, null), jobMemoryMiB: 500 }]).end, null);
});

test('after a restart the stored summary of the same attempt carries on; another attempt’s is not taken', () => {
  const first = new JobTelemetry({ attempt: 1, startedAtMs: T0, cards: 1, declaredMemoryMiB: null }, OFF);
  first.add(T0 + 10_000, [{ uuid: A, card: card(A, 100, 9000, 200), jobMemoryMiB: 9000 }]);
  const stored = first.summary();
  const again = new JobTelemetry({ attempt: 1, startedAtMs: T0, cards: 1, declaredMemoryMiB: null }, OFF, stored);
  again.add(T0 + 20_000, [{ uuid: A, card: card(A, 0, 100, 200), jobMemoryMiB: 100 }]);
  const s = again.summary();
  assert.equal(s.samples, 2);
  assert.equal(s.meanUtilizationPct, 50);
  assert.equal(s.peakMemoryMiB, 9000);
  assert.equal(s.energyJoules, 2000 + 2000);
  const next = new JobTelemetry({ attempt: 2, startedAtMs: T0, cards: 1, declaredMemoryMiB: null }, OFF, stored);
  assert.equal(next.summary().samples, 0);
  assert.equal(next.summary().peakMemoryMiB, null);
});
