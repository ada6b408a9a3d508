import { ConfigError } from '../config.js';
import { DirectorySecretSource } from './directory-source.js';
import { NO_SECRETS, type SecretSource } from './source.js';

/** The secret source GANTRY_SECRETS_DIR names (none when unset); a directory that cannot be used stops the start. */
export async function openSecretSource(dir: string | null): Promise<SecretSource> {
  if (dir === null) return NO_SECRETS;
  try {
    return await DirectorySecretSource.open(dir);
  } catch (err) {
    throw new ConfigError('GANTRY_SECRETS_DIR', (err as Error).message);
  }
}
