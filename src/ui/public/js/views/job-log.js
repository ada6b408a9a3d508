// The Log card of a job page: lines as they arrive, the stream's state,
// follow and timestamp toggles, and a download of the whole log.
import { download } from '../api.js';
import { h } from '../dom.js';

const LOG_DOM_CAP = 20000; // lines kept on the page; Download has them all
const CONN_TEXT = { connecting: 'connecting…', live: '● live', reconnecting: 'reconnecting…', ended: 'ended', gone: 'job gone' };

/** The card, and the `connection(state)` and `lines(batch)` handlers that fill it. */
export function logCard(id, label) {
  const conn = h('span', { id: 'log-connection', class: 'conn' });
  const log = h('pre', { id: 'log', class: 'log', tabindex: '0' });
  const logWrap = h('div', { class: 'log-wrap' }, log);
  const follow = h('input', { type: 'checkbox', id: 'follow', checked: true });
  const stamps = h('input', { type: 'checkbox', id: 'timestamps', onchange: () => log.classList.toggle('show-time', stamps.checked) });
  const lineCount = h('span', { class: 'muted small', id: 'line-count' }, '0 lines');
  const save = () => download(`/v1/jobs/${encodeURIComponent(id)}/logs`, 'text/plain', `${label}.log`);
  const downloadButton = h('button', { type: 'button', class: 'link', id: 'download', onclick: save }, 'Download');
  let count = 0;
  let emptyNote = h('span', { class: 'muted' }, 'No output yet.');
  log.append(emptyNote);

  // Scrolling up stops following; scrolling back to the bottom resumes it.
  let autoScrolling = false;
  logWrap.addEventListener('scroll', () => {
    if (autoScrolling) {
      autoScrolling = false;
      return;
    }
    follow.checked = logWrap.scrollHeight - logWrap.scrollTop - logWrap.clientHeight < 4;
  });
  follow.addEventListener('change', () => {
    if (follow.checked) logWrap.scrollTop = logWrap.scrollHeight;
  });

  const element = h(
    'section',
    { class: 'card log-card' },
    h(
      'div',
      { class: 'card-head' },
      h('h2', {}, 'Log'),
      conn,
      h('span', { class: 'spacer' }),
      lineCount,
      h('label', { class: 'small' }, stamps, ' Times'),
      h('label', { class: 'small' }, follow, ' Follow'),
      downloadButton,
    ),
    logWrap,
  );

  return {
    element,
    connection(s) {
      conn.textContent = CONN_TEXT[s] ?? s;
      conn.dataset.state = s;
    },
    lines(batch) {
      if (emptyNote) {
        emptyNote.remove();
        emptyNote = null;
      }
      const frag = document.createDocumentFragment();
      for (const l of batch) {
        frag.append(h('span', { class: `ln ${l.stream}`, 'data-seq': l.seq, 'data-t': l.time.slice(11, 23) }, `${l.line}\n`));
      }
      log.append(frag);
      count += batch.length;
      while (log.childElementCount > LOG_DOM_CAP) log.firstElementChild.remove();
      lineCount.textContent = `${count.toLocaleString()} line${count === 1 ? '' : 's'}`;
      if (follow.checked && logWrap.scrollTop < logWrap.scrollHeight - logWrap.clientHeight - 1) {
        autoScrolling = true; // this scroll event is ours, not the reader's
        logWrap.scrollTop = logWrap.scrollHeight;
      }
    },
  };
}
