import type { Metric } from 'prom-client';

interface Series {
  labels: { method: string; route: string; status_code: string };
  /** Observations per bucket (not cumulative); the last slot is above every bound. */
  counts: number[];
  sum: number;
  count: number;
}

/**
 * gantry_http_request_duration_seconds: the one metric observed on every
 * request, so on every status poll. prom-client's Histogram.observe builds
 * a closure, validates and hashes the label object and converts the bucket
 * bound to a property name twice per call, a measurable share of a poll
 * (docs/performance.md). Here an observation is a
 * Map lookup and three additions; the exposition is built at scrape time in
 * the shape prom-client's registry prints for its own histograms
 * (test/unit/http-latency.test.ts compares the two texts line by line).
 */
export class HttpLatencyHistogram {
  readonly name = 'gantry_http_request_duration_seconds';
  readonly help = 'HTTP request latency by method, route template and status (SSE streams excluded).';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, Series>();

  constructor(private readonly buckets: readonly number[]) {}

  observe(method: string, route: string, status: number, seconds: number): void {
    const key = `${method} ${status} ${route}`;
    let s = this.series.get(key);
    if (s === undefined) {
      s = {
        labels: { method, route, status_code: String(status) },
        counts: new Array<number>(this.buckets.length + 1).fill(0),
        sum: 0,
        count: 0,
      };
      this.series.set(key, s);
    }
    let i = 0;
    while (i < this.buckets.length && seconds > this.buckets[i]!) i++;
    s.counts[i]! += 1;
    s.sum += seconds;
    s.count += 1;
  }

  /** What prom-client's Registry reads from a metric when it is scraped. */
  get() {
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
    for (const s of this.series.values()) {
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += s.counts[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { le, ...s.labels }, value: cumulative });
      });
      cumulative += s.counts[this.buckets.length]!;
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...s.labels }, value: cumulative });
      values.push({ metricName: `${this.name}_sum`, labels: s.labels, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: s.labels, value: s.count });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /**
   * As prom-client's Registry.registerMetric takes it: the registry only
   * reads name, type and get() (the unit test checks the exposition).
   */
  asMetric(): Metric {
    return this as unknown as Metric;
  }
}
