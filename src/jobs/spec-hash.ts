import crypto from 'node:crypto';
import type { JobSpec } from '../model/job.js';

/** Canonical JSON: object keys sorted, so equal specs hash equally whatever the key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** What makes two submissions "the same body" for an idempotency key. */
export function specHash(spec: JobSpec): string {
  return crypto.createHash('sha256').update(canonical(spec)).digest('hex');
}
