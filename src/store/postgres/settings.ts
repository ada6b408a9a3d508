import type pg from 'pg';
import type { SettingsStore } from '../store.js';
import { read, write } from './db.js';

const GET = `SELECT value FROM settings WHERE key = $1`;
const SET = `INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`;

/** Small persistent key/value settings, shared by the fleet (e.g. the generated admin token's hash). */
export class PgSettingsStore implements SettingsStore {
  constructor(private readonly pool: pg.Pool) {}

  async get(key: string): Promise<string | undefined> {
    const [row] = await read<{ value: string }>(this.pool, { name: 'gantry_setting_get', text: GET, values: [key] });
    return row?.value;
  }

  async set(key: string, value: string): Promise<void> {
    await write(this.pool, { name: 'gantry_setting_set', text: SET, values: [key, value] });
  }
}
