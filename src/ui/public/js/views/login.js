// Sign in: the pasted token is checked against the API before it is stored.
import { api } from '../api.js';
import { h, main } from '../dom.js';
import { renderHeader } from '../header.js';
import { token } from '../token.js';

export function renderLogin(message, onSignedIn) {
  document.title = 'Gantry — sign in';
  const input = h('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    placeholder: 'gty_…',
  });
  const error = h('p', { class: 'error', id: 'login-error', hidden: !message }, message ?? '');
  const button = h('button', { type: 'submit', id: 'login-submit' }, 'Use token');
  const form = h(
    'form',
    {
      id: 'login',
      onsubmit: async (e) => {
        e.preventDefault();
        const t = input.value.trim();
        if (!t) return;
        button.disabled = true;
        error.hidden = true;
        try {
          await api('/v1/jobs?limit=1', { t });
          token.set(t);
          onSignedIn();
        } catch (err) {
          error.textContent =
            err.status === 401
              ? 'This token is not valid.'
              : err.status === 403
                ? 'This token lacks the "read" scope.'
                : `Could not check the token: ${err.message}`;
          error.hidden = false;
        } finally {
          button.disabled = false;
        }
      },
    },
    h('label', { for: 'token' }, 'Bearer token'),
    h('div', { class: 'row' }, input, button),
    error,
  );
  main.replaceChildren(
    h(
      'section',
      { class: 'card login' },
      h('h1', {}, 'Sign in'),
      h(
        'p',
        { class: 'muted' },
        'Paste a Gantry token. It is kept in this tab’s session storage only and sent in the Authorization header; closing the tab forgets it.',
      ),
      form,
    ),
  );
  renderHeader();
  input.focus();
}
