// The "Cancel job" button. A first click only arms it; a second click
// within four seconds cancels, so a stray click stops nothing.
import { api } from '../api.js';
import { h, toast } from '../dom.js';
import { renderHeader } from '../header.js';
import { TERMINAL } from '../jobs.js';
import { dropScope } from '../scopes.js';

const ARMED_MS = 4000;

/** `page.show(job)` shows the job as the cancel left it; `page.render()` redraws it. */
export function cancelButton(id, signal, page) {
  const button = h('button', { type: 'button', id: 'cancel', class: 'danger', hidden: true }, 'Cancel job');
  let armed = null;
  button.addEventListener('click', async () => {
    if (!armed) {
      button.textContent = 'Really cancel?';
      button.classList.add('armed');
      armed = setTimeout(() => {
        armed = null;
        button.textContent = 'Cancel job';
        button.classList.remove('armed');
      }, ARMED_MS);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.disabled = true;
    button.textContent = 'Cancelling…';
    try {
      const job = await api(`/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST', signal });
      toast(
        TERMINAL.has(job.state)
          ? `Job ${job.state}.`
          : 'Cancel requested: the container gets SIGTERM, then SIGKILL after the grace period.',
      );
      page.show(job);
    } catch (err) {
      if (err.status === 403) {
        dropScope('cancel');
        renderHeader();
      }
      toast(`Cancel failed: ${err.message}`, 'error');
    } finally {
      button.disabled = false;
      button.classList.remove('armed');
      button.textContent = 'Cancel job';
      page.render();
    }
  });
  return button;
}
