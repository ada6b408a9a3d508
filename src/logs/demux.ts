import { Writable } from 'node:stream';

export type StdStream = 'stdout' | 'stderr';

/**
 * Splits Docker's multiplexed stdout/stderr stream (8-byte frame headers:
 * stream type, 3 zero bytes, big-endian payload length) into payloads.
 * Frames are not aligned with the chunks that arrive, so a header or payload
 * can straddle chunks. Implemented as a Writable so that Docker's stream is
 * piped with backpressure.
 */
export class DockerDemuxer extends Writable {
  private header = Buffer.alloc(8);
  private headerFill = 0;
  private remaining = 0;
  private current: StdStream = 'stdout';

  constructor(private readonly onPayload: (stream: StdStream, payload: Buffer) => void) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    try {
      this.feed(chunk);
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  feed(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.remaining === 0) {
        const take = Math.min(8 - this.headerFill, chunk.length - off);
        chunk.copy(this.header, this.headerFill, off, off + take);
        this.headerFill += take;
        off += take;
        if (this.headerFill < 8) return;
        this.headerFill = 0;
        // 0 = stdin (never sent here), 1 = stdout, 2 = stderr.
        this.current = this.header[0] === 2 ? 'stderr' : 'stdout';
        this.remaining = this.header.readUInt32BE(4);
        continue;
      }
      const take = Math.min(this.remaining, chunk.length - off);
      this.onPayload(this.current, chunk.subarray(off, off + take));
      this.remaining -= take;
      off += take;
    }
  }
}
