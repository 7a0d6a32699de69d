import { type FormEvent, useId, useState } from 'react';
import {
  ratingsInCurrentModel,
  sendFeedback,
  thanksMessage,
  type WidgetFeedback,
  type WidgetOptions,
} from './client.js';

/**
 * The widget as a React component, for applications built with React:
 *   <FeedbackWidget baseUrl="https://ratchet.example.com" publicKey="rk_pub_..." interactionId={id}
 *     feedbackToken={token} route="support-bot" />
 * where `token` is the gateway's `x-ratchet-feedback-token` for that answer, from your server.
 */
export function FeedbackWidget(options: WidgetOptions) {
  const uid = useId();
  const [thumbs, setThumbs] = useState<'up' | 'down'>();
  const [stars, setStars] = useState<number>();
  const [scores, setScores] = useState<Record<string, number>>({});
  const [comment, setComment] = useState('');
  const [status, setStatus] = useState('');
  const [sending, setSending] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const events: WidgetFeedback[] = [];
    if (thumbs) events.push({ kind: 'thumbs', value: thumbs });
    if (stars) events.push({ kind: 'stars', value: stars });
    if (Object.keys(scores).length) events.push({ kind: 'criteria', scores });
    if (comment.trim()) events.push({ kind: 'comment', text: comment.trim() });
    if (!events.length) return setStatus('Choose a rating or write a comment first.');
    setSending(true);
    try {
      await sendFeedback(options, events);
      setStatus(thanksMessage(await ratingsInCurrentModel(options).catch(() => null)));
    } catch (err) {
      setStatus(`Could not send feedback: ${(err as Error).message}`);
      setSending(false);
    }
  };

  return (
    <form className="ratchet-widget" aria-label="Rate this answer" onSubmit={submit}>
      <fieldset>
        <legend>Thumbs</legend>
        {(['up', 'down'] as const).map((v) => (
          <button
            key={v}
            type="button"
            aria-label={v === 'up' ? 'Thumbs up' : 'Thumbs down'}
            aria-pressed={thumbs === v}
            onClick={() => setThumbs(v)}
          >
            {v === 'up' ? '👍' : '👎'}
          </button>
        ))}
      </fieldset>
      <fieldset>
        <legend>Stars</legend>
        {[1, 2, 3, 4, 5].map((n) => (
          <button
            key={n}
            type="button"
            aria-label={`${n} star${n > 1 ? 's' : ''}`}
            aria-pressed={stars === n}
            onClick={() => setStars(n)}
          >
            ★
          </button>
        ))}
      </fieldset>
      {(options.criteria ?? []).map((name) => (
        <span key={name}>
          <label htmlFor={`${uid}-${name}`}>{name} </label>
          <select
            id={`${uid}-${name}`}
            value={scores[name] ?? ''}
            onChange={(e) => {
              const { [name]: _old, ...rest } = scores;
              setScores(e.target.value ? { ...rest, [name]: Number(e.target.value) } : rest);
            }}
          >
            <option value="">-</option>
            {[1, 2, 3, 4, 5].map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </span>
      ))}
      <label htmlFor={`${uid}-comment`}>Comment</label>
      <textarea id={`${uid}-comment`} rows={2} value={comment} onChange={(e) => setComment(e.target.value)} />
      <button type="submit" disabled={sending}>
        Send feedback
      </button>
      <p role="status" aria-live="polite">
        {status}
      </p>
    </form>
  );
}

export type { WidgetOptions } from './client.js';
