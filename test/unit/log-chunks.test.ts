import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NewLogRecord } from '../../src/model/log.js';
import { decodeChunk, encodeChunk, unpackChunk } from '../../src/store/chunk-codec.js';

const tricky = [
  '',
  'plain',
  'quote"d',
  'back\\slash',
  'tab\there',
  'ends in cr\r',
  '\u0000',
  'é ü ñ',
  '😀',
  '\ud83d lone',
  '\u2028',
  '{"json":1}',
  ' ',
];

test('v2 chunks round-trip every record exactly (text, stream, time), runs grouping equal stream+ms', () => {
  const records: NewLogRecord[] = tricky.map((line, i) => ({
    stream: i % 3 === 0 ? 'stderr' : 'stdout',
    time: 1_000 + Math.floor(i / 4),
    line,
  }));
  records.push({ stream: 'system', time: 2_000, line: '[gantry] log truncated' });
  const text = encodeChunk(records);
  const u = unpackChunk(text);
  assert.deepEqual(
    u.lines,
    records.map((r) => r.line),
  );
  assert.deepEqual(
    u.times,
    records.map((r) => r.time),
  );
  assert.deepEqual(
    u.codes.map((c) => ['stdout', 'stderr', 'system'][c]),
    records.map((r) => r.stream),
  );
  assert.deepEqual(unpackChunk(encodeChunk([{ stream: 'stdout', time: 1, line: '' }])).lines, ['']);
});

test('v1 chunks (JSON array of [code, ms, text]) written by earlier versions still decode', () => {
  const v1 = JSON.stringify(tricky.map((line, i) => [i % 2, 5_000 + i, line]));
  assert.ok(!v1.includes('\n'));
  const lines = decodeChunk({ firstSeq: 10, lastSeq: 10 + tricky.length - 1, lines: v1 }, 11);
  assert.deepEqual(
    lines.map((l) => l.seq),
    tricky.slice(2).map((_, i) => 12 + i),
  );
  assert.deepEqual(
    lines.map((l) => l.line),
    tricky.slice(2),
  );
  assert.equal(lines[0]!.time, new Date(5_002).toISOString());
  assert.deepEqual(
    decodeChunk({ firstSeq: 1, lastSeq: tricky.length, lines: v1 }, 0, 'stderr').map((l) => l.seq),
    [2, 4, 6, 8, 10, 12],
  );
});

test('a chunk whose runs disagree with its lines is refused, not misnumbered', () => {
  assert.throws(() => unpackChunk('[[0,1,3]]\na\nb'), /corrupt log chunk/);
});

test('an SSE log event is byte-for-byte `data: JSON.stringify(line)`, escaping included', async () => {
  const { sse } = await import('../../src/api/routes/v1/job-logs.js');
  for (const line of tricky) {
    for (const stream of ['stdout', 'stderr', 'system'] as const) {
      const l = { seq: 7, stream, time: '2026-01-05T09:30:01.000Z', line };
      assert.equal(sse.line(l), `id: 7\nevent: log\ndata: ${JSON.stringify(l)}\n\n`, JSON.stringify(line));
    }
  }
});
