import { Counter, Gauge, type Registry } from 'prom-client';
import { GPU_HEALTH_STATES, type GpuHealthBook } from '../gpu/health/state.js';

/**
 * Each card's health and the faults seen on it, read from the health book
 * at scrape time: `gantry_gpu_health` is 1 for the card's state and 0 for
 * the others (alert on `gantry_gpu_health{state="unhealthy"} == 1`), its
 * `code` label the why; `gantry_gpu_faults_total` counts faults by code and
 * class (device faults take the card out of service, application Xids do not).
 */
export function registerGpuHealthMetrics(registers: Registry[], health: GpuHealthBook): void {
  const index = new Map(health.devices.map((d) => [d.uuid, String(d.index)]));
  new Gauge({
    name: 'gantry_gpu_health',
    help: "1 for the GPU's health state (healthy, unhealthy, drained), 0 for the others; `code` says why it is out of service.",
    labelNames: ['gpu', 'uuid', 'state', 'code'],
    registers,
    collect() {
      this.reset();
      for (const d of health.devices) {
        const h = health.get(d.uuid);
        for (const state of GPU_HEALTH_STATES) {
          this.set({ gpu: String(d.index), uuid: d.uuid, state, code: state === h.state ? (h.code ?? '') : '' }, state === h.state ? 1 : 0);
        }
      }
    },
  });
  new Counter({
    name: 'gantry_gpu_faults_total',
    help: 'GPU faults seen since this process started, by code (xid_<N>, ecc_uncorrected, retirement_pending, row_remap_failure, no_answer) and class (device: the card went out of service; application: the program’s own fault).',
    labelNames: ['gpu', 'uuid', 'code', 'class'],
    registers,
    collect() {
      this.reset();
      for (const c of health.faultCounts()) this.inc({ gpu: index.get(c.uuid) ?? '', uuid: c.uuid, code: c.code, class: c.class }, c.n);
    },
  });
}
