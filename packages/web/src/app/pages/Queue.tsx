import type { InteractionDetail, ScoreConfig } from '@ratchet/core';
import { useCallback, useEffect, useRef, useState } from 'react';
import { api, session } from '../api.js';
import { useApi } from '../hooks.js';
import { Loading, Page, text } from '../ui.js';

interface PolicyList {
  policies: { name: string; description: string }[];
}

/** What POST /annotation/claim answers: the item locked to this annotator, or null when none is left. */
interface ClaimResponse {
  annotator: string;
  item: {
    interactionId: string;
    expiresAt: number;
    submitted: number;
    overlap: number;
    resumed: boolean;
    pairWith: string | null;
  } | null;
}

interface ProgressResponse {
  annotators: { annotatorId: string; submitted: number; skipped: number; holding: string | null }[];
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

const NAME_KEY = 'ratchet.rater';

/** The annotator a request acts for: the name given on this page, else the signed-in key's own. */
const asAnnotator = (name: string) => (name ? { annotator: name } : {});

export function QueuePage() {
  // The name is typed in `draftName` and used once the field is left, so a half-typed name never
  // claims an item.
  const person = session.me()?.role != null;
  const [draftName, setDraftName] = useState(() => (person ? '' : (sessionStorage.getItem(NAME_KEY) ?? '')));
  const [annotator, setAnnotator] = useState(draftName);
  const [policy, setPolicy] = useState('');
  const [round, setRound] = useState(0);
  const [claim, setClaim] = useState<ClaimResponse | null>(null);
  const [claimError, setClaimError] = useState('');
  const [status, setStatus] = useState('');
  const policies = useApi<PolicyList>('/dashboard/queue?limit=1');
  const progress = useApi<ProgressResponse>('/annotation/progress');
  const reloadProgress = progress.reload;
  /** The item locked to us and for whom, so that a change of name gives it back first. */
  const held = useRef<{ interactionId: string; name: string } | null>(null);

  // biome-ignore lint/correctness/useExhaustiveDependencies: round is how a finished item asks for the next
  useEffect(() => {
    let live = true;
    void (async () => {
      const before = held.current;
      if (before && before.name !== annotator) {
        held.current = null;
        await api('/annotation/release', {
          body: { interactionId: before.interactionId, ...asAnnotator(before.name) },
        }).catch(() => undefined);
      }
      try {
        const next = await api<ClaimResponse>('/annotation/claim', {
          body: { ...asAnnotator(annotator), ...(policy ? { policy } : {}) },
        });
        held.current = next.item ? { interactionId: next.item.interactionId, name: annotator } : null;
        if (live) {
          setClaim(next);
          setClaimError('');
          reloadProgress();
        }
      } catch (err) {
        if (live) setClaimError((err as Error).message);
      }
    })();
    return () => {
      live = false;
    };
  }, [annotator, policy, round, reloadProgress]);

  // Leaving the page gives the item back at once instead of when its lock expires.
  useEffect(
    () => () => {
      const h = held.current;
      if (h)
        void api('/annotation/release', {
          body: { interactionId: h.interactionId, ...asAnnotator(h.name) },
        }).catch(() => undefined);
    },
    [],
  );

  const finished = useCallback(() => {
    held.current = null;
    setRound((r) => r + 1);
  }, []);
  const skip = useCallback(async () => {
    const h = held.current;
    if (!h) return;
    try {
      await api('/annotation/skip', { body: { interactionId: h.interactionId, ...asAnnotator(h.name) } });
      setStatus(`Skipped ${h.interactionId}.`);
    } catch (err) {
      setStatus(`Not skipped: ${(err as Error).message}`);
    }
    finished();
  }, [finished]);

  const item = claim?.item;
  const mine = progress.data?.annotators.find((a) => a.annotatorId === claim?.annotator);
  return (
    <Page title="Annotation queue">
      <div className="filters">
        {/* A signed-in person annotates as themselves; only a key names who it acts for. */}
        {!person && (
          <label>
            Your name on the team{' '}
            <input
              value={draftName}
              placeholder="this key's own"
              onChange={(e) => setDraftName(e.target.value)}
              onBlur={() => {
                const name = draftName.trim();
                sessionStorage.setItem(NAME_KEY, name);
                setAnnotator(name);
              }}
            />
          </label>
        )}
        <label>
          Policy{' '}
          <select value={policy} onChange={(e) => setPolicy(e.target.value)}>
            <option value="">default</option>
            {policies.data?.policies.map((p) => (
              <option key={p.name} value={p.name} title={p.description}>
                {p.name}
              </option>
            ))}
          </select>
        </label>
      </div>
      <p className="muted">Keys: {keyHelp}</p>
      {claim && (
        <p className="progress">
          Rating as <strong>{claim.annotator}</strong>: {mine?.submitted ?? 0} submitted, {mine?.skipped ?? 0}{' '}
          skipped.
          {item &&
            ` This item is locked to you until ${new Date(item.expiresAt).toLocaleTimeString()}; ${item.submitted} of ${item.overlap} annotators rated it before you.`}
        </p>
      )}
      {claimError ? (
        <p role="alert" className="error">
          Could not claim an item: {claimError}
        </p>
      ) : !claim ? (
        <p className="muted">Loading queue…</p>
      ) : item ? (
        <RateItem
          key={`${item.interactionId}:${round}`}
          itemId={item.interactionId}
          pairWith={item.pairWith}
          annotator={annotator}
          report={setStatus}
          onDone={finished}
          onSkip={skip}
        />
      ) : (
        <p>Nothing left to rate under this policy.</p>
      )}
      <p role="status" aria-live="polite">
        {status}
      </p>
    </Page>
  );
}

function RateItem({
  itemId,
  pairWith,
  annotator,
  report,
  onDone,
  onSkip,
}: {
  itemId: string;
  pairWith: string | null;
  annotator: string;
  report: (message: string) => void;
  onDone: () => void;
  onSkip: () => void;
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
    // The queue sets the item, the rater (the annotator) and the source of each.
    const items: Record<string, unknown>[] = [];
    if (draft.thumbs) items.push({ kind: 'thumbs', value: draft.thumbs });
    if (draft.stars) items.push({ kind: 'stars', value: draft.stars });
    if (Object.keys(draft.scores).length) items.push({ kind: 'criteria', scores: draft.scores });
    if (draft.choice && pairWith) items.push({ kind: 'preference', other: pairWith, choice: draft.choice });
    const answer = text(item.data?.output.content);
    if (draft.correction.trim() && draft.correction.trim() !== answer.trim())
      items.push({ kind: 'correction', text: draft.correction.trim() });
    if (draft.comment.trim()) items.push({ kind: 'comment', text: draft.comment.trim() });
    if (!items.length)
      return report('Nothing to save: rate, compare, correct or comment first (or s to skip).');
    try {
      await api('/annotation/submit', { body: { interactionId: itemId, ...asAnnotator(annotator), items } });
      report(`Saved ${items.length} feedback events for ${itemId}.`);
      onDone();
    } catch (err) {
      report(`Not saved: ${(err as Error).message}`);
    }
  }, [draft, item.data, itemId, pairWith, annotator, onDone, report]);

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
        s: onSkip,
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
  }, [submit, pairWith, onSkip]);

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
            <button type="button" onClick={onSkip} aria-keyshortcuts="s">
              Skip (s)
            </button>
          </div>
        </article>
      )}
    </Loading>
  );
}
