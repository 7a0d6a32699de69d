import type { Interaction } from '@ratchet/core';
import { useState } from 'react';
import { query } from '../api.js';
import { useApi } from '../hooks.js';
import { fmt, Loading, Page, Table, text } from '../ui.js';

const filterFields = [
  ['route', 'Route'],
  ['model', 'Model'],
  ['tag', 'Tag'],
  ['raterId', 'Rater'],
] as const;

type Filters = Record<string, string>;

function fromHash(): Filters {
  const q = location.hash.split('?')[1];
  return Object.fromEntries(new URLSearchParams(q ?? ''));
}

export function ExplorerPage() {
  const [draft, setDraft] = useState<Filters>(fromHash);
  const [applied, setApplied] = useState<Filters>(draft);
  const [cursor, setCursor] = useState<string | undefined>();
  const params = {
    ...applied,
    from: applied.from ? Date.parse(applied.from) : undefined,
    to: applied.to ? Date.parse(applied.to) : undefined,
    cursor,
    limit: 50,
  };
  const list = useApi<{ items: Interaction[]; nextCursor: string | null }>(`/interactions${query(params)}`);
  const set = (k: string) => (e: { target: { value: string } }) =>
    setDraft({ ...draft, [k]: e.target.value });
  return (
    <Page title="Feedback explorer">
      <form
        className="filters"
        aria-label="Filters"
        onSubmit={(e) => {
          e.preventDefault();
          setCursor(undefined);
          setApplied(draft);
          history.replaceState(null, '', `#/explorer${query(draft)}`);
        }}
      >
        {filterFields.map(([k, label]) => (
          <label key={k}>
            {label} <input name={k} value={draft[k] ?? ''} onChange={set(k)} />
          </label>
        ))}
        <label>
          Rating{' '}
          <select name="rating" value={draft.rating ?? ''} onChange={set('rating')}>
            <option value="">any</option>
            <option value="up">thumbs up</option>
            <option value="down">thumbs down</option>
            {[1, 2, 3, 4, 5].map((n) => (
              <option key={n} value={n}>
                {n} stars
              </option>
            ))}
          </select>
        </label>
        <label>
          Rated{' '}
          <select name="hasFeedback" value={draft.hasFeedback ?? ''} onChange={set('hasFeedback')}>
            <option value="">any</option>
            <option value="true">rated</option>
            <option value="false">unrated</option>
          </select>
        </label>
        <label>
          From <input type="date" name="from" value={draft.from ?? ''} onChange={set('from')} />
        </label>
        <label>
          To <input type="date" name="to" value={draft.to ?? ''} onChange={set('to')} />
        </label>
        <button type="submit">Apply filters</button>
      </form>
      <Loading state={list} what="interactions">
        {(page) => (
          <>
            <Table
              caption="Interactions, newest first"
              head={['Time', 'Route', 'Model', 'Prompt', 'Answer']}
              rows={page.items.map((i) => [
                fmt.time(i.createdAt),
                i.route ?? '–',
                i.model,
                <a key="a" href={`#/interactions/${encodeURIComponent(i.id)}`}>
                  {text(i.messages.at(-1)?.content).slice(0, 80) || i.id}
                </a>,
                text(i.output.content).slice(0, 80),
              ])}
            />
            {page.nextCursor && (
              <button type="button" onClick={() => setCursor(page.nextCursor!)}>
                Older interactions
              </button>
            )}
          </>
        )}
      </Loading>
    </Page>
  );
}
