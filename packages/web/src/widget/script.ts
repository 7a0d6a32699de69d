import {
  ratingsInCurrentModel,
  sendFeedback,
  thanksMessage,
  type WidgetFeedback,
  type WidgetOptions,
} from './client.js';

/**
 * ratchet-widget.js: a plain script for any page. Include it with the public key, and mark the
 * places to rate:
 *
 *   <script src="https://ratchet.example.com/ratchet-widget.js" data-key="rk_pub_..."></script>
 *   <div data-ratchet-interaction="<interaction id>" data-ratchet-token="<its feedback token>"
 *        data-ratchet-route="support-bot" data-ratchet-criteria="accuracy,helpfulness"></div>
 *
 * The token is the gateway's `x-ratchet-feedback-token` for that answer, from your server.
 *
 * Or call `RatchetWidget.mount(element, options)` yourself.
 */

let idCounter = 0;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> & { attrs?: Record<string, string> } = {},
  children: (Node | string)[] = [],
): HTMLElementTagNameMap[K] {
  const { attrs, ...rest } = props;
  const node = Object.assign(document.createElement(tag), rest);
  for (const [k, v] of Object.entries(attrs ?? {})) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

/** Renders the widget into `target`; resolves when it is ready. */
export function mount(target: HTMLElement, options: WidgetOptions): void {
  const uid = `ratchet-w${++idCounter}`;
  let thumbs: 'up' | 'down' | undefined;
  let stars: number | undefined;
  const thumbButtons = (['up', 'down'] as const).map((v) =>
    el('button', {
      type: 'button',
      textContent: v === 'up' ? '👍' : '👎',
      attrs: { 'aria-label': v === 'up' ? 'Thumbs up' : 'Thumbs down', 'aria-pressed': 'false' },
      onclick: () => {
        thumbs = v;
        for (const b of thumbButtons)
          b.setAttribute('aria-pressed', String(b === thumbButtons[v === 'up' ? 0 : 1]));
      },
    }),
  );
  const starButtons = [1, 2, 3, 4, 5].map((n) =>
    el('button', {
      type: 'button',
      textContent: '★',
      attrs: { 'aria-label': `${n} star${n > 1 ? 's' : ''}`, 'aria-pressed': 'false' },
      onclick: () => {
        stars = n;
        starButtons.forEach((b, i) => {
          b.setAttribute('aria-pressed', String(i + 1 === n));
          b.style.color = i < n ? '#e0a000' : '';
        });
      },
    }),
  );
  const criteriaSelects = (options.criteria ?? []).map((name) => {
    const select = el('select', { id: `${uid}-${name}` }, [
      el('option', { value: '', textContent: '-' }),
      ...[1, 2, 3, 4, 5].map((n) => el('option', { value: String(n), textContent: String(n) })),
    ]);
    return { name, select, label: el('label', { htmlFor: select.id, textContent: `${name} ` }) };
  });
  const comment = el('textarea', { id: `${uid}-comment`, rows: 2 });
  const status = el('p', { attrs: { role: 'status', 'aria-live': 'polite' } });
  const send = el('button', { type: 'submit', textContent: 'Send feedback' });
  const form = el('form', { className: 'ratchet-widget', attrs: { 'aria-label': 'Rate this answer' } }, [
    el('div', { attrs: { role: 'group', 'aria-label': 'Thumbs' } }, thumbButtons),
    el('div', { attrs: { role: 'group', 'aria-label': 'Stars' } }, starButtons),
    ...criteriaSelects.flatMap((c) => [c.label, c.select]),
    el('label', { htmlFor: comment.id, textContent: 'Comment' }),
    comment,
    send,
    status,
  ]);
  form.onsubmit = async (event) => {
    event.preventDefault();
    const events: WidgetFeedback[] = [];
    if (thumbs) events.push({ kind: 'thumbs', value: thumbs });
    if (stars) events.push({ kind: 'stars', value: stars });
    const scores = Object.fromEntries(
      criteriaSelects.filter((c) => c.select.value).map((c) => [c.name, Number(c.select.value)]),
    );
    if (Object.keys(scores).length) events.push({ kind: 'criteria', scores });
    if (comment.value.trim()) events.push({ kind: 'comment', text: comment.value.trim() });
    if (!events.length) {
      status.textContent = 'Choose a rating or write a comment first.';
      return;
    }
    send.disabled = true;
    try {
      await sendFeedback(options, events);
      status.textContent = thanksMessage(await ratingsInCurrentModel(options).catch(() => null));
      form.dataset.sent = 'true';
    } catch (err) {
      status.textContent = `Could not send feedback: ${(err as Error).message}`;
      send.disabled = false;
    }
  };
  target.replaceChildren(form);
}

function scriptSettings(): { baseUrl: string; key: string | undefined } {
  const script = document.currentScript as HTMLScriptElement | null;
  const src = script?.src ? new URL(script.src) : new URL(location.href);
  return { baseUrl: script?.dataset.base ?? src.origin, key: script?.dataset.key };
}

const settings = scriptSettings();

/** Mounts a widget on every `[data-ratchet-interaction]` element not mounted yet. */
export function mountAll(root: ParentNode = document): void {
  if (!settings.key) return;
  for (const target of root.querySelectorAll<HTMLElement>('[data-ratchet-interaction]')) {
    if (target.dataset.ratchetMounted) continue;
    target.dataset.ratchetMounted = 'true';
    mount(target, {
      baseUrl: settings.baseUrl,
      publicKey: settings.key,
      interactionId: target.dataset.ratchetInteraction!,
      // Missing, the server's refusal names the field when the user sends.
      feedbackToken: target.dataset.ratchetToken ?? '',
      ...(target.dataset.ratchetRoute ? { route: target.dataset.ratchetRoute } : {}),
      ...(target.dataset.ratchetCriteria ? { criteria: target.dataset.ratchetCriteria.split(',') } : {}),
    });
  }
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', () => mountAll());
else mountAll();
