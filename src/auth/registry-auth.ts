import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../config.js';

/** GANTRY_REGISTRY_AUTH_FILE: registry host (as in the image reference) → credentials for pulls. */
export const RegistryAuthFileSchema = z.record(z.string().min(1), z.object({ username: z.string(), password: z.string() }).strict());
export type RegistryAuth = z.infer<typeof RegistryAuthFileSchema>;

/**
 * Reads the operator's registry credentials; no file means no credentials.
 * A file that cannot be read or parsed is a ConfigError. Its problems name
 * fields, never values: the file holds passwords, so not even the JSON
 * parser's message (which quotes the text around the fault) is repeated.
 */
export function loadRegistryAuth(file: string | undefined): RegistryAuth {
  if (!file) return {};
  const resolved = path.resolve(file);
  let text: string;
  try {
    text = fs.readFileSync(resolved, 'utf8');
  } catch (err) {
    throw new ConfigError('GANTRY_REGISTRY_AUTH_FILE', `cannot read ${resolved}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new ConfigError('GANTRY_REGISTRY_AUTH_FILE', `${resolved} is not JSON`);
  }
  const parsed = RegistryAuthFileSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      'GANTRY_REGISTRY_AUTH_FILE',
      `${resolved}: ${parsed.error.issues.map((i) => `[${i.path.join('.')}] ${i.message}`).join('; ')}`,
    );
  }
  return parsed.data;
}
