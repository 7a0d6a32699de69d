import type { InteractionDetail, ScoreConfig } from '@ratchet/core';
import { useCallback, useEffect, useRef, useState } from 'react';
import { api, query } from '../api.js';
import { useApi } from '../hooks.js';
import { Loading, Page, text } from '../ui.js';

interface QueueResponse {
  policy: string;
  policies: { name: string; description: string }[];
  items: { interactionId: string; uncertainty: number | null; ratings: number; pairWith: string | null }[];
}

interface Draft {
  thumbs?: 'up' | 'down';
  stars?: number;
  scores: Record<string, number>;
  choice?: 'this' | 'other' | 'tie';
  correction: string;
  comment: string;
}

const emptyDraft = (): Draft => ({ scores: {}, correction: '', comment: '' });

/** The keys, shown on the page so annotators can learn them. */
const keyHelp =
  'u/d thumbs · 1-5 stars · r criteria · a/b/t pairwise · e correction · c comment · Esc leave a field · Enter submit · s skip';

function isTyping(target: EventTarget | null): boolean {
  return target instanceof HTMLElement && ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName);
}

export function QueuePage() {
  const [rater, setRater] = useState(() => sessionStorage.getItem('ratchet.rater') ?? 'annotator');
  const [policy, setPolicy] = useState('');
  const [done, setDone] = useState<Set<string>>(new Set());
  const queue = useApi<QueueResponse>(`/dashboard/queue${query({ policy, raterId: rater, limit: 20 })}`);
  const [status, setStatus] = useState('');
  const next = queue.data?.items.find((i) => !done.has(i.interactionId));
  return (
    <Page title="Annotation queue">
      <div className="filters">
        <label>
          Your rater id{' '}
          <input
            value={rater}
            onChange={(e) => {
              setRater(e.target.value);
              sessionStorage.setItem('ratchet.rater', e.target.value);
            }}
          />
        </label>
        <label>
          Policy{' '}
          <select value={policy} onChange={(e) => setPolicy(e.target.value)}>
            <option value="">default</option>
            {queue.data?.policies.map((p) => (
              <option key={p.name} value={p.name} title={p.description}>
                {p.name}
              </option>
            ))}
          </select>
        </label>
      </div>
      <p className="muted">Keys: {keyHelp}</p>
      <Loading state={queue} what="queue">
        {(q) =>
          next ? (
            <RateItem
              key={next.interactionId}
              itemId={next.interactionId}
              pairWith={next.pairWith}
              rater={rater}
              report={setStatus}
              onDone={() => {
                const seen = new Set(done).add(next.interactionId);
                setDone(seen);
                if (q.items.every((i) => seen.has(i.interactionId))) queue.reload();
              }}
            />
          ) : (
            <p>Nothing left to rate under this policy.</p>
          )
        }
      </Loading>
      <p role="status" aria-live="polite">
        {status}
      </p>
    </Page>
  );
}

function RateItem({
  itemId,
  pairWith,
  rater,
  report,
  onDone,
}: {
  itemId: string;
  pairWith: string | null;
  rater: string;
  report: (message: string) => void;
  onDone: () => void;
}) {
  const item = useApi<InteractionDetail>(`/interactions/${encodeURIComponent(itemId)}`);
  const other = useApi<InteractionDetail>(pairWith ? `/interactions/${encodeURIComponent(pairWith)}` : null);
  const configs = useApi<{ items: ScoreConfig[] }>('/score-configs');
  const criteria = (configs.data?.items ?? []).filter(
    (c) => c.usage === 'criterion' && c.dataType === 'numeric',
  );
  const [draft, setDraft] = useState<Draft>(emptyDraft);
  const correctionRef = useRef<HTMLTextAreaElement>(null);
  const commentRef = useRef<HTMLTextAreaElement>(null);
  const criteriaRef = useRef<HTMLFieldSetElement>(null);

  const submit = useCallback(async () => {
    const common = { interactionId: itemId, raterId: rater, source: 'annotator' };
    const items: Record<string, unknown>[] = [];
    if (draft.thumbs) items.push({ ...common, kind: 'thumbs', value: draft.thumbs });
    if (draft.stars) items.push({ ...common, kind: 'stars', value: draft.stars });
    if (Object.keys(draft.scores).length) items.push({ ...common, kind: 'criteria', scores: draft.scores });
    if (draft.choice && pairWith)
      items.push({ ...common, kind: 'preference', other: pairWith, choice: draft.choice });
    const answer = text(item.data?.output.content);
    if (draft.correction.trim() && draft.correction.trim() !== answer.trim())
      items.push({ ...common, kind: 'correction', text: draft.correction.trim() });
    if (draft.comment.trim()) items.push({ ...common, kind: 'comment', text: draft.comment.trim() });
    if (!items.length)
      return report('Nothing to save: rate, compare, correct or comment first (or s to skip).');
    try {
      await api('/feedback', { body: { items } });
      report(`Saved ${items.length} feedback events for ${itemId}.`);
      onDone();
    } catch (err) {
      report(`Not saved: ${(err as Error).message}`);
    }
  }, [draft, item.data, itemId, pairWith, rater, onDone, report]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (isTyping(e.target)) {
        if (e.key === 'Escape') (e.target as HTMLElement).blur();
        if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) void submit();
        return;
      }
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const k = e.key;
      const act: Record<string, () => void> = {
        u: () => setDraft((d) => ({ ...d, thumbs: 'up' })),
        d: () => setDraft((d) => ({ ...d, thumbs: 'down' })),
        a: () => pairWith && setDraft((d) => ({ ...d, choice: 'this' })),
        b: () => pairWith && setDraft((d) => ({ ...d, choice: 'other' })),
        t: () => pairWith && setDraft((d) => ({ ...d, choice: 'tie' })),
        e: () => correctionRef.current?.focus(),
        r: () => criteriaRef.current?.querySelector('select')?.focus(),
        c: () => commentRef.current?.focus(),
        s: onDone,
        enter: () => void submit(),
      };
      if (/^[1-5]$/.test(k)) act[k] = () => setDraft((d) => ({ ...d, stars: Number(k) }));
      const fn = act[k === 'Enter' ? 'enter' : k];
      // Enter on a focused button already clicks it.
      if (!fn || (k === 'Enter' && e.target instanceof HTMLButtonElement)) return;
      e.preventDefault();
      fn();
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [submit, pairWith, onDone]);

  return (
    <Loading state={item} what="item">
      {(i) => (
        <article aria-label="Item to rate" data-interaction={i.id}>
          <h2>Prompt</h2>
          <ol className="messages">
            {i.messages.map((m, n) => (
              // biome-ignore lint/suspicious/noArrayIndexKey: messages are an ordered list
              <li key={n}>
                <strong>{m.role}:</strong> {text(m.content)}
              </li>
            ))}
          </ol>
          <div className="answers">
            <section aria-label="Answer A">
              <h3>{pairWith ? 'Answer A' : 'Answer'}</h3>
              <p className="answer">{text(i.output.content)}</p>
            </section>
            {pairWith && other.data && (
              <section aria-label="Answer B">
                <h3>Answer B</h3>
                <p className="answer">{text(other.data.output.content)}</p>
              </section>
            )}
          </div>
          <fieldset className="controls">
            <legend>Thumbs</legend>
            {(['up', 'down'] as const).map((v) => (
              <button
                key={v}
                type="button"
                aria-pressed={draft.thumbs === v}
                aria-keyshortcuts={v === 'up' ? 'u' : 'd'}
                onClick={() => setDraft({ ...draft, thumbs: v })}
              >
                {v === 'up' ? '👍 Thumbs up (u)' : '👎 Thumbs down (d)'}
              </button>
            ))}
          </fieldset>
          <fieldset className="controls">
            <legend>Stars</legend>
            {[1, 2, 3, 4, 5].map((n) => (
              <button
                key={n}
                type="button"
                aria-label={`${n} star${n > 1 ? 's' : ''}`}
                aria-pressed={draft.stars === n}
                aria-keyshortcuts={String(n)}
                onClick={() => setDraft({ ...draft, stars: n })}
              >
                {'★'.repeat(n)}
              </button>
            ))}
          </fieldset>
          {criteria.length > 0 && (
            <fieldset className="controls" ref={criteriaRef}>
              <legend>Criteria (r)</legend>
              {criteria.map((c) => (
                <label key={c.name}>
                  {c.name}{' '}
                  <select
                    value={draft.scores[c.name] ?? ''}
                    onChange={(e) => {
                      const { [c.name]: _old, ...rest } = draft.scores;
                      setDraft({
                        ...draft,
                        scores: e.target.value ? { ...rest, [c.name]: Number(e.target.value) } : rest,
                      });
                    }}
                  >
                    <option value="">–</option>
                    {Array.from({ length: (c.max ?? 5) - (c.min ?? 1) + 1 }, (_, k) => (c.min ?? 1) + k).map(
                      (v) => (
                        <option key={v} value={v}>
                          {v}
                        </option>
                      ),
                    )}
                  </select>
                </label>
              ))}
            </fieldset>
          )}
          {pairWith && (
            <fieldset className="controls">
              <legend>Pairwise comparison</legend>
              {(
                [
                  ['this', 'A is better (a)', 'a'],
                  ['other', 'B is better (b)', 'b'],
                  ['tie', 'Tie (t)', 't'],
                ] as const
              ).map(([choice, label, key]) => (
                <button
                  key={choice}
                  type="button"
                  aria-pressed={draft.choice === choice}
                  aria-keyshortcuts={key}
                  onClick={() => setDraft({ ...draft, choice })}
                >
                  {label}
                </button>
              ))}
            </fieldset>
          )}
          <label htmlFor="correction">Correction: the answer you wanted (e)</label>
          <textarea
            id="correction"
            ref={correctionRef}
            rows={4}
            placeholder={text(i.output.content)}
            value={draft.correction}
            onChange={(e) => setDraft({ ...draft, correction: e.target.value })}
          />
          <label htmlFor="comment">Comment (c)</label>
          <textarea
            id="comment"
            ref={commentRef}
            rows={2}
            value={draft.comment}
            onChange={(e) => setDraft({ ...draft, comment: e.target.value })}
          />
          <div className="controls">
            <button type="button" onClick={() => void submit()} aria-keyshortcuts="Enter">
              Submit and next (Enter)
            </button>
            <button type="button" onClick={onDone} aria-keyshortcuts="s">
              Skip (s)
            </button>
          </div>
        </article>
      )}
    </Loading>
  );
}
