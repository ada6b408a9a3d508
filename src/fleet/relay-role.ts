import type { AddressInfo } from 'node:net';
import os from 'node:os';
import type { Logger } from 'pino';
import type { RelayableFeed, RelayOffer } from '../store/store.js';
import { ChangeRelay } from './change-relay.js';
import { RelayFollower } from './relay-follower.js';

/**
 * This node's part in the fleet's change relay, as its decider tells it
 * (runner/fleet-decider.ts, DeciderRelay):
 * while the node decides, it relays its feed and publishes where (the
 * decider's lease carries the offer); while another decides, it follows
 * that node's relay, if it offers one.
 */
export class RelayRole {
  readonly relay: ChangeRelay;
  private readonly follower: RelayFollower;
  private url: string | null;

  constructor(
    feed: RelayableFeed,
    log: Logger,
    /** Where the other nodes reach this node's API (GANTRY_NODE_URL), or null: where it listens, once it does. */
    url: string | null,
  ) {
    this.relay = new ChangeRelay(feed);
    this.follower = new RelayFollower(feed, log);
    this.url = url;
  }

  /** The API listens at `url` (null: not on TCP): the relay's address, unless one was given. */
  listening(url: string | null): void {
    this.url ??= url;
  }

  offer(): RelayOffer | null {
    return this.url === null ? null : this.relay.offer(this.url);
  }

  decides(deciding: boolean, other: RelayOffer | null): void {
    this.relay.setOpen(deciding);
    this.follower.follow(deciding ? null : other);
  }

  /** Whether this node hears the fleet's changes through another node's relay now. */
  following(): boolean {
    return this.follower.following();
  }

  close(): void {
    this.follower.stop();
    this.relay.close();
  }
}

/**
 * Where the other nodes reach an API that listens at `address` on `host`:
 * that host, or this machine's name when it listens on every address.
 */
export function reachableUrl(address: AddressInfo | string | null, host: string, tls: boolean): string | null {
  if (address === null || typeof address === 'string') return null;
  const everywhere = host === '0.0.0.0' || host === '::' || host === '';
  const name = everywhere ? os.hostname() : address.address;
  const bracketed = name.includes(':') ? `[${name}]` : name;
  return `${tls ? 'https' : 'http'}://${bracketed}:${address.port}`;
}
