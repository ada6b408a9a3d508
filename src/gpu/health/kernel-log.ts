import fs from 'node:fs';
import { kmsgMessage } from './xid.js';

/** Records read in one call at most: a flood of kernel messages cannot hold up the event loop for long. */
const MAX_READS = 10_000;

/**
 * Reads the kernel log (/dev/kmsg, one `PRIORITY,SEQ,USEC,FLAGS;MESSAGE`
 * record per read) without blocking: opened non-blocking, each call takes
 * what was written since the last. A plain file of such records (tests)
 * reads the same way. What the log held when it was opened is passed over:
 * those messages predate this process, and a card they condemned that is
 * still bad shows in nvidia-smi's answers.
 */
export class KernelLogReader {
  private fd: number | null = null;
  private partial = '';
  private readonly buf = Buffer.alloc(64 * 1024);

  constructor(readonly path: string) {}

  /** The messages written since the last call ([] on the first, which opens the log); throws when it cannot be opened. */
  read(): string[] {
    if (this.fd === null) {
      this.fd = fs.openSync(this.path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
      this.drain();
      return [];
    }
    return this.drain();
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }

  private drain(): string[] {
    const out: string[] = [];
    for (let i = 0; i < MAX_READS; i++) {
      let n: number;
      try {
        n = fs.readSync(this.fd!, this.buf, 0, this.buf.length, null);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') break;
        // The ring buffer overwrote records before they were read: the next read goes on from the oldest left.
        if (code === 'EPIPE') continue;
        throw err;
      }
      if (n === 0) break;
      this.partial += this.buf.toString('utf8', 0, n);
      const lines = this.partial.split('\n');
      this.partial = lines.pop()!;
      for (const line of lines) {
        const message = kmsgMessage(line);
        if (message !== null) out.push(message);
      }
    }
    return out;
  }
}
