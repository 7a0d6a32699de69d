import { useReport } from '../hooks.js';
import { fmt, Loading, Page, Table } from '../ui.js';

interface Change {
  model: { id: string; name: string; route: string | null; stage: string; createdAt: number };
  previous: { id: string; name: string } | null;
  dataset: { name: string; version: number; method: string } | null;
  learnedFrom: { interactions: number; feedbackByKind: Record<string, number> } | null;
  themes: { label: string; rate: number | null; previousRate: number | null }[];
  history: { action: string; actor: string; createdAt: number; details: Record<string, unknown> }[];
}

const perThousand = (rate: number | null) => fmt.num(rate === null ? null : rate * 1000, 1);

export function WhatChangedPage() {
  const changes = useReport<{ items: Change[] }>('/dashboard/what-changed');
  return (
    <Page title="What changed">
      <Loading state={changes} what="model versions">
        {(c) =>
          c.items.length === 0 ? (
            <p className="muted">No registered models yet.</p>
          ) : (
            [...c.items].reverse().map((x) => {
              const k = x.learnedFrom?.feedbackByKind ?? {};
              const ratings = ['thumbs', 'stars', 'criteria', 'preference'].reduce(
                (a, n) => a + (k[n] ?? 0),
                0,
              );
              const shrank = x.themes.filter(
                (t) => t.rate !== null && t.previousRate !== null && t.rate < t.previousRate,
              );
              return (
                <article key={x.model.id} aria-label={x.model.name}>
                  <h2>
                    {x.model.name} <span className={`stage ${x.model.stage}`}>{x.model.stage}</span>
                  </h2>
                  <p>
                    {x.dataset
                      ? `Learned from ${x.dataset.name} v${x.dataset.version} (${x.dataset.method}): ${x.learnedFrom?.interactions ?? 0} interactions, ${ratings} ratings, ${k.correction ?? 0} corrections, ${k.comment ?? 0} comments.`
                      : 'No dataset lineage (a base model).'}
                    {x.previous ? ` Follows ${x.previous.name} on route ${x.model.route ?? '–'}.` : ''}
                  </p>
                  {x.previous && (
                    <Table
                      caption={`Complaint themes that shrank against ${x.previous.name} (complaints per 1,000 rated answers)`}
                      head={['Theme', 'Before', 'Now']}
                      rows={shrank.map((t) => [t.label, perThousand(t.previousRate), perThousand(t.rate)])}
                    />
                  )}
                  <Table
                    caption="Stage history"
                    head={['Time', 'Action', 'By', 'Details']}
                    rows={x.history.map((h) => [
                      fmt.time(h.createdAt),
                      h.action,
                      h.actor,
                      JSON.stringify(h.details),
                    ])}
                  />
                </article>
              );
            })
          )
        }
      </Loading>
    </Page>
  );
}
