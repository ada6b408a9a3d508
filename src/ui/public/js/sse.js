// Server-Sent Events read from a fetch body. The page reads the live log with
// fetch rather than EventSource because EventSource cannot send the
// Authorization header, and the token must never go in a URL.

/** Yields, for each chunk read, the complete events it finished. */
export async function* sseBatches(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      const events = [];
      for (let cut = buf.indexOf('\n\n'); cut >= 0; cut = buf.indexOf('\n\n')) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const ev = parseEvent(block);
        if (ev) events.push(ev);
      }
      if (events.length) yield events;
    }
  } finally {
    reader.cancel().catch(() => undefined);
  }
}

/** One event block; null for a block of comments only (a heartbeat). */
function parseEvent(block) {
  const ev = { event: 'message', data: [], id: null, retry: null };
  for (const raw of block.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let val = colon < 0 ? '' : line.slice(colon + 1);
    if (val.startsWith(' ')) val = val.slice(1);
    if (field === 'event') ev.event = val;
    else if (field === 'data') ev.data.push(val);
    else if (field === 'id') ev.id = val;
    else if (field === 'retry' && /^\d+$/.test(val)) ev.retry = Number(val);
  }
  return ev.data.length > 0 || ev.retry !== null ? { ...ev, data: ev.data.join('\n') } : null;
}
