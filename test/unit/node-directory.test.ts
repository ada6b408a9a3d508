import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { NodeDirectory } from '../../src/fleet/directory.js';
import type { JobSpec } from '../../src/model/job.js';
import type { NodeRecord, NodeStore } from '../../src/store/store.js';
import { nodeInfo } from '../helpers/records.js';

// The nodes a submit check sees are read from the store once and kept until
// the fleet changes (the change feed, or this node's own hand, says so):
// a read per submit would cost the fleet a read of every node per submit.

const node = (name: string, state: NodeRecord['state'] = 'up'): NodeRecord => ({
  ...nodeInfo(name),
  epoch: 1,
  state,
  drained: false,
  startedAt: new Date(0).toISOString(),
  heartbeatAt: new Date(0).toISOString(),
  heartbeatAgeSeconds: 0,
});

test('submit checks read the nodes once, and again only after a change of the fleet is heard, or a minute', async (t) => {
  mock.timers.enable({ apis: ['Date'], now: 0 });
  t.after(() => mock.timers.reset());
  let nodes = [node('a'), node('b')];
  let reads = 0;
  const store = {
    list: async () => {
      reads++;
      return nodes;
    },
  } as Pick<NodeStore, 'list'> as NodeStore;
  const directory = new NodeDirectory(store);
  const onB: JobSpec = { image: 'local/busybox:latest', command: ['true'], placement: { node: 'b' } };

  assert.equal(await directory.placementProblem(onB), null);
  assert.equal(await directory.placementProblem(onB), null);
  assert.equal(reads, 1, 'one read for both checks');

  nodes = [node('a'), node('b', 'lost')];
  mock.timers.tick(30_000);
  assert.equal(await directory.placementProblem(onB), null, 'a change not yet heard is not seen');
  assert.equal(reads, 1);
  directory.invalidate();
  const problem = await directory.placementProblem(onB);
  assert.equal(problem?.path, 'placement.node');
  assert.match(problem?.message ?? '', /no node "b" is up/);
  assert.equal(reads, 2);

  nodes = [node('a'), node('b')];
  mock.timers.tick(59_000);
  assert.ok(await directory.placementProblem(onB), 'kept for a minute');
  mock.timers.tick(1_000);
  assert.equal(await directory.placementProblem(onB), null, 'a change that went unheard is seen after a minute');
  assert.equal(reads, 3);
});
