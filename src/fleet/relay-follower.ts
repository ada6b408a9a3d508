import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Logger } from 'pino';
import type { RelayableFeed, RelayOffer } from '../store/store.js';
import { HELLO_LINE, RELAY_PATH, RELAY_SILENCE_MS } from './change-relay.js';

/** The first wait before trying a relay again after it failed, doubled after each failure up to the last. */
const RETRY_FIRST_MS = 2_000;
const RETRY_MAX_MS = 60_000;

/**
 * Follows the decider's change relay (fleet/change-relay.ts) in place of
 * this node's own LISTEN on the store, whenever the decider offers one.
 *
 * The rules it keeps:
 * - The node's feed listens itself until the relay's hello came and the
 *   feed's handover (RelayableFeed.startRelayed) is done, and again as soon
 *   as the stream ends, fails or is silent for `silenceMs`: a relay that
 *   cannot be followed costs a retry later, never a change.
 * - It follows one relay at a time, the one last offered; a new offer (a
 *   new decider) or none (this node decides, or the decider relays nothing)
 *   ends the stream it had.
 */
export class RelayFollower {
  private offered: RelayOffer | null = null;
  private stream: AbortController | null = null;
  /** Whether the feed was handed over to the current stream. */
  private relayed = false;
  private failures = 0;
  private retry: NodeJS.Timeout | null = null;

  constructor(
    private readonly feed: RelayableFeed,
    private readonly log: Logger,
    private readonly silenceMs = RELAY_SILENCE_MS,
  ) {}

  /** The relay another node's lease offers now, or null: follow it (or stop following). */
  follow(offer: RelayOffer | null): void {
    if (!sameOffer(offer, this.offered)) {
      this.stop();
      this.offered = offer;
      this.failures = 0;
    }
    if (this.offered !== null && this.stream === null && this.retry === null) void this.run(this.offered);
  }

  /** Whether the node's changes come through a relay now. */
  following(): boolean {
    return this.relayed;
  }

  /** Ends the stream, if any: the feed listens itself again. */
  stop(): void {
    this.offered = null;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    const stream = this.stream;
    this.stream = null;
    stream?.abort(new Error('the decider no longer offers this relay'));
  }

  private async run(offer: RelayOffer): Promise<void> {
    const stream = new AbortController();
    this.stream = stream;
    let silence: NodeJS.Timeout | undefined;
    const heardOf = () => {
      clearTimeout(silence);
      silence = setTimeout(() => stream.abort(new Error(`the relay was silent for ${this.silenceMs} ms`)), this.silenceMs);
    };
    let relayed = false;
    let why: Error;
    try {
      heardOf();
      const res = await get(new URL(RELAY_PATH, offer.url), offer.token, stream.signal);
      if (res.statusCode !== 200) {
        res.resume();
        throw new Error(`the relay answered HTTP ${res.statusCode}`);
      }
      res.setEncoding('utf8');
      let rest = '';
      for await (const chunk of res as AsyncIterable<string>) {
        heardOf();
        rest += chunk;
        let end = rest.indexOf('\n');
        while (end >= 0) {
          const line = rest.slice(0, end);
          rest = rest.slice(end + 1);
          end = rest.indexOf('\n');
          if (relayed) {
            this.feed.relayed(line);
            continue;
          }
          if (line !== HELLO_LINE) throw new Error('the relay’s stream did not begin with its hello');
          // Lines read meanwhile wait in the stream: the handover is done before the next is given.
          if (!(await this.feed.startRelayed())) throw new Error('this node’s feed could not hand over now');
          relayed = true;
          this.relayed = true;
          this.failures = 0;
          this.log.info({ relay: offer.url }, 'this node hears the fleet’s changes through the decider’s relay');
        }
      }
      why = new Error('the relay ended its stream');
    } catch (err) {
      why = stream.signal.aborted ? (stream.signal.reason as Error) : (err as Error);
    } finally {
      clearTimeout(silence);
    }
    if (relayed) {
      if (this.stream === stream || this.stream === null) this.relayed = false;
      this.feed.relayLost(why);
    }
    if (this.stream !== stream) return;
    this.stream = null;
    stream.abort(why);
    this.retryLater(offer, why);
  }

  private retryLater(offer: RelayOffer, why: Error): void {
    this.failures++;
    const delay = Math.min(RETRY_FIRST_MS * 2 ** (this.failures - 1), RETRY_MAX_MS);
    this.log.warn(
      { err: why, relay: offer.url, retryInMs: delay },
      'the fleet change relay could not be followed; this node listens to the store itself meanwhile',
    );
    this.retry = setTimeout(() => {
      this.retry = null;
      if (sameOffer(offer, this.offered) && this.stream === null) void this.run(offer);
    }, delay);
    this.retry.unref();
  }
}

function sameOffer(a: RelayOffer | null, b: RelayOffer | null): boolean {
  return a?.url === b?.url && a?.token === b?.token;
}

/** The relay's stream: a GET with the relay's token, its response once the headers came (node's own streams: a line costs no web-stream machinery). */
function get(url: URL, token: string, signal: AbortSignal): Promise<IncomingMessage> {
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    // A connection of its own (agent: false), closed with the stream, never parked in a pool.
    const req = client.get(
      url,
      { agent: false, headers: { authorization: `Bearer ${token}`, accept: 'application/x-ndjson' }, signal },
      resolve,
    );
    req.on('error', reject);
  });
}
