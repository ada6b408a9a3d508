// Building the page. Children are appended as text or nodes, never parsed as
// HTML, so job data (names, reasons, log lines) cannot inject markup.

/** The content area; each view replaces its children. */
export const main = document.getElementById('main');

/** Builds an element; children are text or nodes (never parsed as HTML). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'style')
      el.style.cssText = v; // CSSOM: allowed by the page's CSP, unlike a style attribute
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

let toastTimer;

/** Shows a short message at the foot of the page for five seconds. */
export function toast(message, kind = 'info') {
  const el = document.getElementById('toast');
  el.textContent = message;
  el.className = kind;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.hidden = true), 5000);
}

/** A table of rows under its headers, or the `empty` sentence when there are none. */
export function table(headers, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'empty muted' }, empty);
  const head = h(
    'tr',
    {},
    headers.map((x) => h('th', {}, x)),
  );
  return h('table', {}, h('thead', {}, head), h('tbody', {}, rows));
}
