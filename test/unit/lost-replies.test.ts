/**
 * Every write a job's run makes is safe to repeat: a write can commit and
 * its reply still be lost (the connection drops before the answer), and
 * the run, told StoreUnavailableError, tries it again. Driven through the
 * scheduler and one job's run on the fake runtime, against real SQLite and
 * a real, throwaway PostgreSQL, with the faults injected at the store seam
 * (test/helpers/faulty-store.ts); then each store method repeated alone.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, type TestContext, test } from 'node:test';
import pino from 'pino';
import type { Principal } from '../../src/auth/tokens.js';
import { loadConfig } from '../../src/config.js';
import { settleAttempt } from '../../src/jobs/retry-policy.js';
import { FencedError } from '../../src/model/errors.js';
import type { Job, JobSpec } from '../../src/model/job.js';
import { EMPTY_LOG_STATE, type LogState, type NewLogRecord } from '../../src/model/log.js';
import { IllegalTransitionError, type JobState } from '../../src/model/states.js';
import { ChunkConflictError } from '../../src/store/chunk-codec.js';
import { openPostgresStore } from '../../src/store/postgres/index.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { Fence, JobPatch, Store } from '../../src/store/store.js';
import { jobServiceOn, startDomain, type TestDomain } from '../helpers/domain.js';
import { FakeRuntime } from '../helpers/fake-runtime.js';
import { FaultyStore } from '../helpers/faulty-store.js';
import { createDatabase, startPostgres, type TestPostgres } from '../helpers/postgres.js';

const owner: Principal = { owner: 'team-a', scopes: new Set(['submit', 'read', 'cancel']), isAdmin: false };
const spec = (extra: Partial<JobSpec> = {}): JobSpec => ({ image: 'local/busybox:latest', command: ['true'], ...extra });
const config = loadConfig({ GANTRY_DATA_DIR: os.tmpdir(), GANTRY_STOP_GRACE_SECONDS: '0' });
const log = pino({ level: 'silent' });
const NODE = 'node-1';

let cluster: TestPostgres | null = null;
let databases = 0;
before(async () => {
  cluster = await startPostgres();
});
after(() => cluster?.destroy());

type Kind = 'sqlite' | 'postgres';

/** A fresh real store of the kind. */
async function openStore(kind: Kind): Promise<Store> {
  return kind === 'sqlite'
    ? await openSqliteStore(fs.mkdtempSync(path.join(os.tmpdir(), 'lost-')))
    : await openPostgresStore({
        url: await createDatabase(cluster!.url, `lost${process.pid}_${++databases}`),
        node: NODE,
        log: { warn: () => undefined },
      });
}
const running = (j: Job) => j.state === 'running';

interface Harness extends TestDomain {
  faults: FaultyStore;
  runtime: FakeRuntime;
  /** The states each job was announced in, in order. */
  announced: Map<string, JobState[]>;
  /** A job that writes `output` once running, then exits with `exitCode`; resolves once it ended. */
  runJob(output: string, exitCode: number): Promise<{ id: string; done: Job }>;
}

/** The scheduler of one node on the fake runtime, over a real store behind a FaultyStore. */
async function harness(t: TestContext, kind: Kind): Promise<Harness> {
  const faults = new FaultyStore(await openStore(kind));
  const runtime = new FakeRuntime();
  const domain = await startDomain({ store: faults.store, runtime, config, log, owner, shared: kind === 'postgres' });
  t.after(async () => {
    await domain.scheduler.shutdown();
    await faults.inner.close();
  });
  const announced = new Map<string, JobState[]>();
  domain.events.onAnyStatus((j) => announced.set(j.id, [...(announced.get(j.id) ?? []), j.state]));
  const runJob = async (output: string, exitCode: number) => {
    const id = await domain.submit(spec());
    await domain.until(id, running);
    const c = await runtime.containerOf(id);
    runtime.write(c.id, output);
    runtime.exit(c.id, exitCode);
    return { id, done: await domain.until(id, undefined, 10_000) };
  };
  return { ...domain, faults, runtime, announced, runJob };
}

const times = (states: JobState[] | undefined, state: JobState) => (states ?? []).filter((s) => s === state).length;

for (const kind of ['sqlite', 'postgres'] as const) {
  describe(`a run over ${kind} whose write's reply is lost`, () => {
    test('on the `running` transition: the run carries on, and the job succeeds with its exit code', async (t) => {
      const h = await harness(t, kind);
      h.faults.inject({ method: 'jobs.update', mode: 'lost-reply', when: (_id, patch) => patch.state === 'running' });
      const { id, done } = await h.runJob('working\n', 0);
      assert.equal(h.faults.count('jobs.update'), 1, 'the fault fired');
      assert.deepEqual([done.state, done.exitCode, done.reason], ['succeeded', 0, null]);
      assert.deepEqual(await h.lines(id), ['working']);
      assert.equal(times(h.announced.get(id), 'running'), 1, 'running is announced once');
      assert.equal(done.attempts.length, 1);
    });

    test('on a log append: the capture carries on, and every line is stored exactly once', async (t) => {
      const h = await harness(t, kind);
      const id = await h.submit(spec());
      await h.until(id, running);
      const c = await h.runtime.containerOf(id);
      // The second chunk of lines is the one whose reply is lost.
      let chunks = 0;
      h.faults.inject({ method: 'logs.append', mode: 'lost-reply', when: (_id, records) => records.length > 0 && ++chunks === 2 });
      const expected: string[] = [];
      for (let batch = 0; batch < 4; batch++) {
        const lines = Array.from({ length: 5 }, (_, i) => `batch ${batch} line ${i}`);
        expected.push(...lines);
        h.runtime.write(c.id, `${lines.join('\n')}\n`);
        await new Promise((r) => setTimeout(r, 60)); // past the capture's flush delay: one chunk per batch
      }
      h.runtime.exit(c.id, 0);
      const done = await h.until(id, undefined, 10_000);
      assert.equal(h.faults.count('logs.append'), 1, 'the fault fired');
      assert.equal(done.state, 'succeeded');
      assert.deepEqual(await h.lines(id), expected);
      assert.equal(done.result, 'batch 3 line 4');
    });

    test('on the write that ends the job: it ends once, with one attempt, with its own outcome', async (t) => {
      const h = await harness(t, kind);
      h.faults.inject({ method: 'jobs.update', mode: 'lost-reply', when: (_id, patch) => patch.endAttempt !== undefined });
      const { id, done } = await h.runJob('bye\n', 3);
      assert.equal(h.faults.count('jobs.update'), 1, 'the fault fired');
      assert.deepEqual([done.state, done.exitCode, done.reason], ['failed', 3, 'exited with code 3']);
      assert.equal(done.attempts.length, 1);
      // The run learns its end is recorded when it repeats the write (end-recorder.ts), and only then announces it.
      await waitFor(() => h.runtime.containers.size === 0, 'the container is removed once its end is known recorded');
      assert.equal(times(h.announced.get(id), 'failed'), 1, 'the end is announced once');
      assert.equal((await h.jobs.get(owner, id)).attempts.length, 1);
    });

    test('on the write that queues the next attempt: the job runs again and succeeds, no attempt lost or doubled', async (t) => {
      const h = await harness(t, kind);
      h.faults.inject({ method: 'jobs.update', mode: 'lost-reply', when: (_id, patch) => patch.endAttempt?.retried === true });
      const id = await h.submit(spec({ retry: { maxAttempts: 2, on: ['exit_code'] } }));
      await h.until(id, running);
      const first = await h.runtime.containerOf(id);
      h.runtime.exit(first.id, 1);
      await h.until(id, (j) => j.state === 'running' && j.attempt === 2);
      const second = [...h.runtime.containers.values()].find((x) => x.id !== first.id && x.state === 'running');
      assert.ok(second, 'attempt 2 has its own container');
      h.runtime.exit(second.id, 0);
      const done = await h.until(id, undefined, 10_000);
      assert.equal(h.faults.count('jobs.update'), 1, 'the fault fired');
      assert.deepEqual([done.state, done.attempt], ['succeeded', 2]);
      assert.deepEqual(
        done.attempts.map((a) => [a.attempt, a.outcome, a.retried]),
        [
          [1, 'failed', true],
          [2, 'succeeded', false],
        ],
      );
    });

    test('on a claim: the job is run by the node that took it, at its next scheduling pass', async (t) => {
      const h = await harness(t, kind);
      h.faults.inject({ method: 'jobs.claim', mode: 'lost-reply' });
      const first = await h.submit(spec());
      await waitFor(() => h.faults.count('jobs.claim') === 1, 'the claim was made and its reply lost');
      // The pass that lost the reply failed; the next one (here, for another job) takes the first again.
      const second = await h.submit(spec());
      for (const id of [first, second]) {
        await h.until(id, running);
        h.runtime.exit((await h.runtime.containerOf(id)).id, 0);
        assert.equal((await h.until(id, undefined, 10_000)).state, 'succeeded');
      }
    });

    test('a write refused before it reached the store is simply made again', async (t) => {
      const h = await harness(t, kind);
      h.faults.inject({ method: 'jobs.update', mode: 'refused', when: (_id, patch) => patch.state === 'running' });
      h.faults.inject({ method: 'logs.append', mode: 'refused', when: (_id, records) => records.length > 0 });
      const { id, done } = await h.runJob('one\ntwo\n', 0);
      assert.equal(h.faults.fired.length, 2);
      assert.equal(done.state, 'succeeded');
      assert.deepEqual(await h.lines(id), ['one', 'two']);
    });
  });

  describe(`each write repeated after its reply was lost, over ${kind}`, () => {
    /** A JobService on the store, with a job taken by NODE (attempt 1) and the states it announced. */
    async function taken(t: TestContext) {
      const store = await openStore(kind);
      t.after(() => store.close());
      const { service, events } = jobServiceOn(store, config);
      const node = await store.nodes.register({ name: NODE, labels: {}, gpus: [], version: 'test', leaseSeconds: 30 });
      const { job } = await service.submit(owner, spec({ retry: { maxAttempts: 3, on: ['exit_code'] } }), {
        idempotencyKey: null,
        requestId: null,
      });
      assert.ok(await store.jobs.claim(job.id, { name: NODE, epoch: node.epoch }));
      const announced: JobState[] = [];
      events.onAnyStatus((j) => announced.push(j.state));
      const fence: Fence = { node: NODE, attempt: 1, epoch: 1 };
      return { store, service, id: job.id, fence, announced };
    }

    test('a state change already applied resolves the record, announced once; another state still refuses', async (t) => {
      const { service, id, fence, announced } = await taken(t);
      await service.transition(id, 'starting', {}, fence);
      const patch = { startedAt: new Date().toISOString() };
      const first = await service.transition(id, 'running', patch, fence);
      const again = await service.transition(id, 'running', patch, fence);
      assert.equal(again?.state, 'running');
      assert.equal(again?.startedAt, first?.startedAt);
      assert.deepEqual(announced, ['starting', 'running'], 'no second announcement of an unchanged record');
      await assert.rejects(service.transition(id, 'starting', {}, fence), IllegalTransitionError);
      await assert.rejects(service.transition(id, 'running', patch, { node: 'node-2', attempt: 1, epoch: 1 }), FencedError);
    });

    test('a state change whose reply was lost is announced by its repeat', async (t) => {
      const { store, service, id, fence, announced } = await taken(t);
      await store.jobs.update(id, { state: 'starting' }, { state: 'queued', fence }); // committed, reply lost
      const record = await service.transition(id, 'starting', {}, fence);
      assert.equal(record?.state, 'starting');
      assert.deepEqual(announced, ['starting']);
    });

    for (const retried of [false, true]) {
      test(`an attempt end already recorded (${retried ? 'queued again' : 'the job ended'}) is done; the fleet's end is not`, async (t) => {
        const { store, service, id, fence } = await taken(t);
        await service.transition(id, 'starting', {}, fence);
        const now = (await service.transition(id, 'running', { startedAt: new Date().toISOString() }, fence))!;
        const ending = {
          outcome: 'failed' as const,
          cause: retried ? ('exit_code' as const) : null,
          reason: 'exited with code 1',
          exitCode: 1,
        };
        const { patch } = settleAttempt(now, ending, new Date());
        const to = retried ? 'queued' : 'failed';
        const first = await service.transition(id, to, patch, fence);
        const again = await service.transition(id, to, patch, fence);
        assert.equal(again?.state, to);
        assert.equal(again?.attempt, first?.attempt);
        assert.equal((await store.jobs.get(id, { fresh: true }))?.attempts.length, 1, 'one attempt recorded');
        // The same attempt ended otherwise (the fleet settling a lost node) is not this write.
        const otherEnd: JobPatch = { ...patch, endAttempt: { ...patch.endAttempt!, cause: 'node_lost' } };
        if (retried) await assert.rejects(service.transition(id, to, otherEnd, fence), FencedError);
        else assert.equal(await service.transition(id, to, otherEnd, fence), undefined, 'a job another hand ended');
      });
    }

    test('a patch that gave the job back to the queue, repeated, is done', async (t) => {
      const { service, id, fence } = await taken(t);
      await service.patch(id, { node: null }, fence);
      const again = await service.patch(id, { node: null }, fence);
      assert.deepEqual([again.state, again.node, again.attempt], ['queued', null, 1]);
      await assert.rejects(service.patch(id, { result: 'x' }, fence), FencedError, 'a patch that does not move the job is fenced');
    });

    test('a state change that gave the job back to the queue (the engine away), repeated, is done', async (t) => {
      const { service, id, fence, announced } = await taken(t);
      await service.transition(id, 'pulling', {}, fence);
      const back = { node: null, gpus: [], gpuMemoryMiB: null, reason: null };
      await service.transition(id, 'queued', back, fence);
      const again = await service.transition(id, 'queued', back, fence);
      assert.deepEqual([again?.state, again?.node, again?.attempt], ['queued', null, 1]);
      assert.deepEqual(announced, ['pulling', 'queued']);
      await assert.rejects(service.transition(id, 'pulling', {}, fence), FencedError, "the job is no longer this run's");
    });

    test('a claim repeated by the node that took the job gets it again; another node does not', async (t) => {
      const { store, id } = await taken(t);
      const node = (await store.nodes.get(NODE))!;
      const again = await store.jobs.claim(id, { name: NODE, epoch: node.epoch });
      assert.deepEqual([again?.node, again?.state, again?.attempt], [NODE, 'queued', 1]);
      const other = await store.nodes.register({ name: 'node-2', labels: {}, gpus: [], version: 'test', leaseSeconds: 30 });
      assert.equal(await store.jobs.claim(id, { name: 'node-2', epoch: other.epoch }), undefined);
      assert.equal(await store.jobs.claim(id, { name: NODE, epoch: node.epoch - 1 }), undefined, 'not by an older process of the node');
    });

    test('a log append repeated with the same records writes nothing; other records there are refused', async (t) => {
      const { store, id, fence } = await taken(t);
      const records: NewLogRecord[] = [
        { stream: 'stdout', time: 1_700_000_000_000, line: 'one' },
        { stream: 'stderr', time: 1_700_000_000_001, line: 'two' },
      ];
      const next: LogState = { ...EMPTY_LOG_STATE, nextSeq: 3, stdoutRecords: 1, stderrRecords: 1, bytes: 8, lastStdout: 'one' };
      await store.logs.append(id, records, next, fence);
      await store.logs.append(id, records, next, fence);
      await store.logs.append(id, records, next);
      assert.deepEqual(
        (await store.logs.tail(id, 10)).map((l) => [l.seq, l.line]),
        [
          [1, 'one'],
          [2, 'two'],
        ],
      );
      assert.deepEqual(await store.logs.state(id), next);
      const other = records.map((r) => ({ ...r, line: `${r.line}!` }));
      await assert.rejects(store.logs.append(id, other, { ...next, bytes: 10 }, fence), ChunkConflictError);
      assert.deepEqual(await store.logs.state(id), next, 'a refused append changes nothing');
      const more: NewLogRecord[] = [{ stream: 'stdout', time: 1_700_000_000_002, line: 'three' }];
      await store.logs.append(id, more, { ...next, nextSeq: 4, stdoutRecords: 2, bytes: 14, lastStdout: 'three' }, fence);
      assert.deepEqual(
        (await store.logs.tail(id, 10)).map((l) => l.line),
        ['one', 'two', 'three'],
      );
    });
  });
}

async function waitFor(pred: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
