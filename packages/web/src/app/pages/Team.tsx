import type { PersonAgreement, TeamAgreement } from '@ratchet/core';
import { useState } from 'react';
import { api } from '../api.js';
import { useApi } from '../hooks.js';
import { fmt, Loading, Page, Table } from '../ui.js';

type Kind = 'thumbs' | 'stars';

interface ProgressResponse {
  annotators: {
    annotatorId: string;
    submitted: number;
    skipped: number;
    holding: string | null;
    agreement: Record<Kind, PersonAgreement | null>;
  }[];
  agreement: Record<Kind, TeamAgreement>;
}

interface Disagreement {
  interactionId: string;
  kind: Kind;
  ratings: { annotatorId: string; value: string | number }[];
  adjudication: { value: unknown; decidedBy: string; decidedAt: number; note: string | null } | null;
}

const kinds: Kind[] = ['thumbs', 'stars'];

/** One person's agreement on a kind: the share of their comparisons that agree, and mean kappa. */
const agreementCell = (a: PersonAgreement | null) =>
  a?.agreement === null || !a ? '–' : `${fmt.pct(a.agreement)} (κ ${fmt.num(a.meanKappa)})`;

/**
 * The annotation team: each annotator's progress and agreement with the others (each person one
 * rater), and the items they split on, where an admin records the final label.
 */
export function TeamPage() {
  const progress = useApi<ProgressResponse>('/annotation/progress');
  const split = useApi<{ items: Disagreement[] }>('/annotation/disagreements');
  return (
    <Page title="Annotation team">
      <h2>Progress and agreement per annotator</h2>
      <Loading state={progress} what="annotators">
        {(p) => (
          <>
            <Table
              caption="Each annotator: items submitted and skipped, the item held now, and agreement with whoever else rated the same items (share agreeing, mean Cohen's kappa)"
              head={['Annotator', 'Submitted', 'Skipped', 'Holding', 'Thumbs agreement', 'Stars agreement']}
              rows={p.annotators.map((a) => [
                a.annotatorId,
                a.submitted,
                a.skipped,
                a.holding ?? '–',
                agreementCell(a.agreement.thumbs),
                agreementCell(a.agreement.stars),
              ])}
            />
            {kinds.map((kind) => (
              <Table
                key={kind}
                caption={`Pairs of annotators on ${kind} (team alpha ${fmt.num(p.agreement[kind].alpha)})`}
                head={['Annotator', 'With', 'Items both rated', 'Agreed', "Cohen's kappa"]}
                rows={p.agreement[kind].pairs.map((pair) => [
                  pair.raterA,
                  pair.raterB,
                  pair.n,
                  fmt.pct(pair.agreement),
                  fmt.num(pair.kappa),
                ])}
              />
            ))}
          </>
        )}
      </Loading>
      <h2>Adjudication</h2>
      <Loading state={split} what="disagreements">
        {(d) =>
          d.items.length === 0 ? (
            <p className="muted">No item has annotators who disagree.</p>
          ) : (
            <ul className="adjudication">
              {d.items.map((item) => (
                <li key={`${item.interactionId}:${item.kind}`}>
                  <Adjudicate
                    item={item}
                    onDecided={() => {
                      split.reload();
                    }}
                  />
                </li>
              ))}
            </ul>
          )
        }
      </Loading>
    </Page>
  );
}

function Adjudicate({ item, onDecided }: { item: Disagreement; onDecided: () => void }) {
  const options = item.kind === 'thumbs' ? ['up', 'down'] : [1, 2, 3, 4, 5];
  const [value, setValue] = useState(String(item.adjudication?.value ?? ''));
  const [note, setNote] = useState('');
  const [status, setStatus] = useState('');
  const label = `${item.interactionId} (${item.kind})`;
  const record = async () => {
    try {
      await api('/annotation/adjudications', {
        body: {
          interactionId: item.interactionId,
          kind: item.kind,
          value: item.kind === 'stars' ? Number(value) : value,
          ...(note.trim() ? { note: note.trim() } : {}),
        },
      });
      setStatus(`Recorded ${value} for ${label}.`);
      onDecided();
    } catch (err) {
      setStatus(`Not recorded: ${(err as Error).message}`);
    }
  };
  return (
    <article aria-label={`Disagreement on ${label}`}>
      <h3>
        <a href={`#/interactions/${encodeURIComponent(item.interactionId)}`}>{item.interactionId}</a> ·{' '}
        {item.kind}
      </h3>
      <p>
        {item.ratings.map((r) => `${r.annotatorId}: ${r.value}`).join(' · ')}
        {item.adjudication
          ? ` — final: ${String(item.adjudication.value)} by ${item.adjudication.decidedBy}, ${fmt.time(item.adjudication.decidedAt)}`
          : ' — no final label yet'}
      </p>
      <div className="controls">
        <label>
          Final label for {label}{' '}
          <select value={value} onChange={(e) => setValue(e.target.value)}>
            <option value="">–</option>
            {options.map((o) => (
              <option key={o} value={String(o)}>
                {o}
              </option>
            ))}
          </select>
        </label>
        <label>
          Note <input value={note} onChange={(e) => setNote(e.target.value)} />
        </label>
        <button type="button" disabled={!value} onClick={() => void record()}>
          Record final label for {label}
        </button>
      </div>
      <p role="status" aria-live="polite">
        {status}
      </p>
    </article>
  );
}
