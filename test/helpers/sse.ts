import { request } from 'undici';

export interface SseEvent {
  id?: string;
  event: string;
  data: string;
}

/**
 * Reads a Server-Sent Events response to its end (or until `stop` says so),
 * parsing events as a browser would.
 */
export async function readSse(
  url: string,
  token: string,
  opts: { headers?: Record<string, string>; stop?: (e: SseEvent, all: SseEvent[]) => boolean; onEvent?: (e: SseEvent) => void } = {},
): Promise<{ events: SseEvent[]; status: number; headers: Record<string, string | string[] | undefined>; comments: number }> {
  const ac = new AbortController();
  const res = await request(url, {
    headers: { accept: 'text/event-stream', authorization: `Bearer ${token}`, ...(opts.headers ?? {}) },
    signal: ac.signal,
  });
  const events: SseEvent[] = [];
  let comments = 0;
  let buf = '';
  let cur: Partial<SseEvent> & { data?: string } = {};
  try {
    for await (const chunk of res.body) {
      buf += chunk.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === '') {
          if (cur.data !== undefined || cur.event !== undefined) {
            const e: SseEvent = { event: cur.event ?? 'message', data: cur.data ?? '', ...(cur.id !== undefined ? { id: cur.id } : {}) };
            events.push(e);
            opts.onEvent?.(e);
            if (opts.stop?.(e, events)) {
              ac.abort();
              return { events, status: res.statusCode, headers: res.headers, comments };
            }
          }
          cur = {};
        } else if (line.startsWith(':')) comments++;
        else {
          const i = line.indexOf(':');
          const field = i === -1 ? line : line.slice(0, i);
          const value = i === -1 ? '' : line.slice(i + 1).replace(/^ /, '');
          if (field === 'data') cur.data = cur.data === undefined ? value : `${cur.data}\n${value}`;
          else if (field === 'event') cur.event = value;
          else if (field === 'id') cur.id = value;
        }
      }
    }
  } catch (err) {
    if ((err as Error).name !== 'AbortError') throw err;
  }
  return { events, status: res.statusCode, headers: res.headers, comments };
}
