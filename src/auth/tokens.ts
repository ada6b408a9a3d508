import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../config.js';

import { type Principal, SCOPES, type Scope } from '../model/principal.js';

export { type Principal, SCOPES, type Scope };

export const TokenEntrySchema = z
  .object({
    owner: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[A-Za-z0-9_.@-]+$/),
    scopes: z.array(z.enum(SCOPES)).min(1),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be the hex SHA-256 of the token'),
  })
  .strict();
export const TokensFileSchema = z.array(TokenEntrySchema);
export type TokenEntry = z.infer<typeof TokenEntrySchema>;

/**
 * Tokens are 256-bit random strings, so a single SHA-256 is a sound way to
 * keep them at rest (a slow password hash buys nothing against a brute force
 * of 2^256 and would cost every status poll a few milliseconds).
 */
export function hashToken(token: string): string {
  return crypto.createHash('sha256').update(token, 'utf8').digest('hex');
}

export function generateToken(): string {
  return `gty_${crypto.randomBytes(32).toString('base64url')}`;
}

export class TokenStore {
  private entries: { digest: Buffer; principal: Principal }[] = [];

  constructor(entries: TokenEntry[]) {
    this.replace(entries);
  }

  /** Puts these tokens in place of the ones accepted so far, at once: a request is checked against one set or the other. */
  replace(entries: TokenEntry[]): void {
    this.entries = entries.map((e) => ({
      digest: Buffer.from(e.sha256, 'hex'),
      principal: { owner: e.owner, scopes: new Set(e.scopes), isAdmin: e.scopes.includes('admin') },
    }));
  }

  /**
   * Compares the presented token's digest with every entry in constant time,
   * never stopping early, so timing reveals neither which entry matched nor
   * how much of a digest did.
   */
  verify(token: string): Principal | undefined {
    // One-shot hash to hex, then a Buffer: the cheapest form on every
    // status poll (docs/performance.md has the measurements).
    const digest = Buffer.from(crypto.hash('sha256', token), 'hex');
    let found: Principal | undefined;
    for (const e of this.entries) {
      if (crypto.timingSafeEqual(digest, e.digest) && found === undefined) found = e.principal;
    }
    return found;
  }
}

const ADMIN_SETTING = 'generated_admin_sha256';

export interface TokenSources {
  adminToken: string | undefined;
  tokensFile: string | undefined;
  /** Reads/writes a persisted setting (the hash of a generated admin token). */
  settings: { get(key: string): Promise<string | undefined>; set(key: string, value: string): Promise<void> };
  /** Called once with a freshly generated admin token, to print it. */
  announce: (token: string) => void;
}

/**
 * Builds the token store from GANTRY_ADMIN_TOKEN and GANTRY_TOKENS_FILE. When
 * neither is configured, an admin token is generated on first start, shown
 * once, and only its hash is kept (in the store's settings). A tokens file
 * that cannot be read or parsed is a ConfigError.
 */
export async function loadTokens(src: TokenSources): Promise<TokenStore> {
  const entries = configuredTokens(src);
  if (entries.length === 0) {
    let digest = await src.settings.get(ADMIN_SETTING);
    if (!digest) {
      const token = generateToken();
      digest = hashToken(token);
      await src.settings.set(ADMIN_SETTING, digest);
      src.announce(token);
    }
    entries.push({ owner: 'admin', scopes: ['admin'], sha256: digest });
  }
  return new TokenStore(entries);
}

/**
 * Reads GANTRY_TOKENS_FILE again into the store (SIGHUP): tokens added there
 * are accepted and tokens removed refused from then on, GANTRY_ADMIN_TOKEN
 * still counting. False when there is no tokens file to read; a file that
 * cannot be used throws ConfigError and the tokens in use stay.
 */
export function reloadTokens(store: TokenStore, src: Pick<TokenSources, 'adminToken' | 'tokensFile'>): boolean {
  if (!src.tokensFile) return false;
  store.replace(configuredTokens(src));
  return true;
}

/** The tokens GANTRY_ADMIN_TOKEN and GANTRY_TOKENS_FILE name; ConfigError for a file that cannot be read or parsed. */
function configuredTokens(src: Pick<TokenSources, 'adminToken' | 'tokensFile'>): TokenEntry[] {
  const entries: TokenEntry[] = [];
  if (src.adminToken) entries.push({ owner: 'admin', scopes: ['admin'], sha256: hashToken(src.adminToken) });
  if (!src.tokensFile) return entries;
  const file = path.resolve(src.tokensFile);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('GANTRY_TOKENS_FILE', `cannot read ${file}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('GANTRY_TOKENS_FILE', `${file} is not JSON: ${(err as Error).message}`);
  }
  const parsed = TokensFileSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      'GANTRY_TOKENS_FILE',
      `${file}: ${parsed.error.issues.map((i) => `[${i.path.join('.')}] ${i.message}`).join('; ')}`,
    );
  }
  entries.push(...parsed.data);
  return entries;
}
