// Gantry's own HTTP latency histogram (src/metrics/http-latency.ts) must
// print exactly what prom-client's Histogram prints for the same
// observations, through prom-client's real Registry.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Histogram, Registry } from 'prom-client';
import { HttpLatencyHistogram } from '../../src/metrics/http-latency.js';

const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

test('the exposition equals prom-client Histogram’s for the same observations, bounds and overflow included', async () => {
  const ours = new HttpLatencyHistogram(BUCKETS);
  const oursRegistry = new Registry();
  oursRegistry.registerMetric(ours.asMetric());
  const reference = new Registry();
  const theirs = new Histogram({
    name: ours.name,
    help: ours.help,
    labelNames: ['method', 'route', 'status_code'],
    buckets: BUCKETS,
    registers: [reference],
  });
  const observations: [string, string, number, number][] = [
    ['GET', '/v1/jobs/:id', 200, 0.0004],
    ['GET', '/v1/jobs/:id', 200, 0.001], // exactly on a bound: in that bucket (le is inclusive)
    ['GET', '/v1/jobs/:id', 200, 0.0031],
    ['GET', '/v1/jobs/:id', 404, 0.02],
    ['POST', '/v1/jobs', 201, 0.2],
    ['POST', '/v1/jobs', 201, 12], // above every bound: only +Inf
    ['GET', 'unmatched', 404, 0.0009],
    ['GET', '/v1/jobs/:id', 200, 2.5],
  ];
  for (const [method, route, status, seconds] of observations) {
    ours.observe(method, route, status, seconds);
    theirs.observe({ method, route, status_code: String(status) }, seconds);
  }
  const got = await oursRegistry.metrics();
  assert.equal(got, await reference.metrics(), 'the same text, line for line and in the same order');
  // And the figures themselves, not only their agreement.
  assert.match(
    got,
    /^gantry_http_request_duration_seconds_bucket\{le="0.001",method="GET",route="\/v1\/jobs\/:id",status_code="200"\} 2$/m,
  );
  assert.match(got, /^gantry_http_request_duration_seconds_bucket\{le="10",method="POST",route="\/v1\/jobs",status_code="201"\} 1$/m);
  assert.match(got, /^gantry_http_request_duration_seconds_bucket\{le="\+Inf",method="POST",route="\/v1\/jobs",status_code="201"\} 2$/m);
  assert.match(got, /^gantry_http_request_duration_seconds_count\{method="GET",route="\/v1\/jobs\/:id",status_code="200"\} 4$/m);
  assert.match(got, /^# TYPE gantry_http_request_duration_seconds histogram$/m);
});

test('no observation, no series: only the HELP and TYPE lines', async () => {
  const r = new Registry();
  r.registerMetric(new HttpLatencyHistogram(BUCKETS).asMetric());
  assert.deepEqual(
    (await r.metrics())
      .trim()
      .split('\n')
      .map((l) => l.split(' ').slice(0, 2).join(' ')),
    ['# HELP', '# TYPE'],
  );
});
