import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DockerDemuxer } from '../../src/logs/demux.js';
import { LineSplitter, MAX_LINE } from '../../src/logs/line-splitter.js';
import { frame } from '../helpers/docker-frames.js';

function split(chunks: Buffer[]): string[] {
  const out: string[] = [];
  const s = new LineSplitter((l) => out.push(l));
  for (const c of chunks) s.push(c);
  s.end();
  return out;
}

/** Cuts a buffer at random points (also inside multi-byte characters). */
function randomChunks(buf: Buffer, seed: number): Buffer[] {
  let x = seed;
  const rnd = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; ) {
    const n = 1 + Math.floor(rnd() * 40000);
    out.push(buf.subarray(i, i + n));
    i += n;
  }
  return out;
}

const sample = Buffer.from(
  ['a', '', 'ünïcödé ✓ 🚀', 'x'.repeat(MAX_LINE), 'y'.repeat(MAX_LINE * 2 + 5), 'crlf\r', 'z'.repeat(MAX_LINE - 1)].join('\n') +
    '\npartial last',
);

test('records do not depend on how the bytes were chunked', () => {
  const whole = split([sample]);
  for (let seed = 1; seed <= 25; seed++) assert.deepEqual(split(randomChunks(sample, seed)), whole, `seed ${seed}`);
  const bytewise = split([...sample].map((b) => Buffer.from([b])));
  assert.deepEqual(bytewise, whole);
});

test('lines are split, long lines chunked, CR dropped, the partial last line kept', () => {
  const r = split([sample]);
  assert.deepEqual(r.slice(0, 3), ['a', '', 'ünïcödé ✓ 🚀']);
  assert.equal(r[3], 'x'.repeat(MAX_LINE));
  assert.equal(r[4], '', 'a line of exactly MAX_LINE leaves an empty remainder record');
  assert.deepEqual(r.slice(5, 8), ['y'.repeat(MAX_LINE), 'y'.repeat(MAX_LINE), 'yyyyy']);
  assert.equal(r[8], 'crlf');
  assert.equal(r[9], 'z'.repeat(MAX_LINE - 1));
  assert.equal(r[10], 'partial last');
  assert.equal(r.length, 11);
});

test('the demuxer reassembles frames split anywhere, headers included', () => {
  const wire = Buffer.concat([frame(1, 'out one\nout '), frame(2, 'err one\n'), frame(1, 'two\n'), frame(2, '')]);
  for (let cut = 1; cut < wire.length; cut++) {
    const got: string[] = [];
    const d = new DockerDemuxer((s, p) => got.push(`${s}:${p.toString()}`));
    d.feed(wire.subarray(0, cut));
    d.feed(wire.subarray(cut));
    const joined = { stdout: '', stderr: '' };
    for (const g of got) {
      const [s, ...rest] = g.split(':');
      joined[s as 'stdout' | 'stderr'] += rest.join(':');
    }
    assert.deepEqual(joined, { stdout: 'out one\nout two\n', stderr: 'err one\n' }, `cut at ${cut}`);
  }
});

test('a long line is cut between code points, never inside a surrogate pair', () => {
  // An emoji (two UTF-16 units) straddles every MAX_LINE boundary of this line.
  const line = `a${'🚀'.repeat(MAX_LINE)}`;
  const records = split([Buffer.from(`${line}\n`)]);
  assert.equal(records.join(''), line);
  for (const r of records) {
    assert.ok(r.length <= MAX_LINE);
    // A lone surrogate would come back from UTF-8 as U+FFFD.
    assert.equal(Buffer.from(r, 'utf8').toString('utf8'), r, 'a record holds a lone surrogate');
  }
  assert.deepEqual(split(randomChunks(Buffer.from(`${line}\n`), 7)), records);
});
