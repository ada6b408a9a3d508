import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { RelayableFeed, RelayOffer } from '../store/store.js';

/**
 * How often the relay checks its own connection to the store while it has
 * followers; each check that answers sends a mark line, which is also the
 * relay's sign of life (a follower gives it up after RELAY_SILENCE_MS
 * without a line): a relay whose store link froze goes silent with it.
 */
export const RELAY_BEAT_MS = 2_000;
export const RELAY_SILENCE_MS = 3 * RELAY_BEAT_MS;
/** The relay's stream on the decider's API (api/routes/v1/fleet-changes.ts). */
export const RELAY_PATH = '/v1/fleet/changes';
/** The line every stream starts with, once the relay has taken the follower on. */
export const HELLO_LINE = '{"k":"hello"}';
/**
 * Most bytes a follower may leave unread: one that falls this far behind is
 * cut off (it then listens to the store itself and reads back what it
 * missed), so a stalled follower never grows the relay's memory.
 */
const BACKLOG_MAX_BYTES = 8 * 1024 * 1024;

/**
 * The fleet's change relay, served by the node that decides for the fleet:
 * PostgreSQL wakes every listening session for every notification, so N
 * listening nodes cost it N deliveries per change; with the relay, the
 * decider alone listens and writes each line it hears, in order, to every
 * follower's stream (fleet/relay-follower.ts; the lines are described at
 * RelayableFeed).
 *
 * The rules it keeps:
 * - It serves only while its node decides and its own feed listens; every
 *   stream ends when either stops (`setOpen(false)`, or the feed's
 *   connection is lost), and its followers then listen themselves and read back from the
 *   last mark they had: nothing is lost, only relayed no more.
 * - A follower proves itself with the token published with the decider's
 *   lease (random per process): whoever can read the store can
 *   follow, and nobody else.
 * - A stream starts with a hello written after the follower was taken on,
 *   so every line heard after the hello reaches it.
 * - Its sign of life is the store's: the beat checks the relay's own
 *   connection, whose answer sends a mark, so a follower of a relay that
 *   hears nothing from the store hears nothing from it either, and leaves.
 */
export class ChangeRelay {
  private readonly streams = new Set<ServerResponse>();
  private readonly tokenHash: Buffer;
  private readonly untap: () => void;
  private beats: NodeJS.Timeout | null = null;
  /** Lines heard in this turn of the event loop, written to every stream at once after it. */
  private batch: string[] = [];
  private flushing = false;
  /** Whether this node decides for the fleet now (told by its decider). */
  private open = false;
  readonly token: string;

  constructor(
    private readonly feed: RelayableFeed,
    private readonly beatMs = RELAY_BEAT_MS,
  ) {
    this.token = randomBytes(32).toString('base64url');
    this.tokenHash = digest(this.token);
    this.untap = feed.tap((line) => (line === null ? this.endAll() : this.send(line)));
  }

  /** What the decider publishes with its lease, once its API listens at `url`. */
  offer(url: string): RelayOffer {
    return { url, token: this.token };
  }

  /** Whether the bearer token is this relay's. */
  admits(token: string): boolean {
    return timingSafeEqual(digest(token), this.tokenHash);
  }

  /** Whether a follower may be taken on now. */
  serving(): boolean {
    return this.open && this.feed.listening();
  }

  /** This node decides for the fleet (true) or no longer does (false: every stream ends). */
  setOpen(open: boolean): void {
    if (this.open && !open) this.endAll();
    this.open = open;
  }

  /** Takes a follower on: its stream gets every line heard from now on, after a hello. */
  follow(res: ServerResponse): void {
    this.flush();
    // The connection ends with the stream: one kept alive would hold the server's close for its keep-alive timeout.
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', connection: 'close' });
    this.streams.add(res);
    res.on('close', () => {
      this.streams.delete(res);
      if (this.streams.size === 0) this.stopBeats();
    });
    res.write(`${HELLO_LINE}\n`);
    if (this.beats === null) {
      this.beats = setInterval(() => this.feed.beat(), this.beatMs);
      this.beats.unref();
    }
  }

  /** How many followers it streams to now. */
  followers(): number {
    return this.streams.size;
  }

  /** Ends every stream: this node no longer decides (or its feed's connection was lost). */
  endAll(): void {
    this.batch = [];
    for (const res of this.streams) res.end();
    this.streams.clear();
    this.stopBeats();
  }

  /** No follower is left: the relay's own connection is checked at the feed's own pace again. */
  private stopBeats(): void {
    if (this.beats) clearInterval(this.beats);
    this.beats = null;
  }

  close(): void {
    this.untap();
    this.endAll();
  }

  /** Queues a line for every stream; the turn's lines go out in one write per stream. */
  private send(line: string): void {
    if (this.streams.size === 0) return;
    this.batch.push(line);
    if (this.flushing) return;
    this.flushing = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushing = false;
    if (this.batch.length === 0) return;
    const chunk = `${this.batch.join('\n')}\n`;
    this.batch = [];
    for (const res of this.streams) {
      if (res.writableLength > BACKLOG_MAX_BYTES) {
        res.destroy();
        this.streams.delete(res);
      } else res.write(chunk);
    }
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}
