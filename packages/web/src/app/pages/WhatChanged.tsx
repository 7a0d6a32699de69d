import { BarChart } from '../charts.js';
import { useReport } from '../hooks.js';
import { fmt, Loading, Page, Table } from '../ui.js';

type Learned = { interactions: number; feedbackByKind: Record<string, number> };

interface Change {
  model: {
    id: string;
    name: string;
    route: string | null;
    stage: string;
    createdAt: number;
    baseModel: string;
  };
  previous: { id: string; name: string; relation: 'built-on' | 'tested-against' | 'earlier-on-route' } | null;
  dataset: { name: string; version: number; method: string } | null;
  learnedFrom: Learned | null;
  newSincePrevious: Learned | null;
  promotedBy: {
    id: string;
    name: string;
    metric: string;
    variant: string;
    against: string;
    decidedAt: number;
    reasons: string[];
  } | null;
  themes: { label: string; rate: number | null; previousRate: number | null }[];
  history: { action: string; actor: string; createdAt: number; details: Record<string, unknown> }[];
}

const perThousand = (rate: number | null) => fmt.num(rate === null ? null : rate * 1000, 1);
const ratingKinds = ['thumbs', 'stars', 'criteria', 'preference'];
const ratings = (l: Learned | null) =>
  ratingKinds.reduce((a, n) => a + (l?.feedbackByKind[n] ?? 0), 0).toLocaleString('en');

const relation = {
  'built-on': (p: string) => `Trained on top of ${p}'s merged weights (a stacked round).`,
  'tested-against': (p: string) => `Tested against ${p}, the production model of its experiment.`,
  'earlier-on-route': (p: string) => `Follows ${p} on its route.`,
};

function LearnedFrom({ x }: { x: Change }) {
  if (!x.dataset) return <p>No dataset lineage (a base model).</p>;
  const k = x.learnedFrom?.feedbackByKind ?? {};
  return (
    <p>
      Learned from {x.dataset.name} v{x.dataset.version} ({x.dataset.method}):{' '}
      {(x.learnedFrom?.interactions ?? 0).toLocaleString('en')} interactions, {ratings(x.learnedFrom)}{' '}
      ratings, {k.correction ?? 0} corrections, {k.comment ?? 0} comments.
      {x.previous && x.newSincePrevious
        ? ` New since ${x.previous.name}: ${x.newSincePrevious.interactions.toLocaleString('en')} interactions, ${ratings(x.newSincePrevious)} ratings, ${x.newSincePrevious.feedbackByKind.correction ?? 0} corrections.`
        : ''}
    </p>
  );
}

function PromotedBy({ x }: { x: Change }) {
  const e = x.promotedBy;
  if (!e)
    return x.model.stage === 'production' ? (
      <p>Promoted by hand (see the stage history), not by an experiment.</p>
    ) : null;
  return (
    <p>
      Shipped by experiment <a href="#/models">{e.name}</a> on {fmt.time(e.decidedAt)}: {e.variant} against{' '}
      {e.against} on {e.metric.replaceAll('_', ' ')}. {e.reasons.join('; ')}
    </p>
  );
}

/** Complaint themes, per 1,000 rated answers, for this version and the one before it. */
function Themes({ x }: { x: Change }) {
  if (!x.previous) return null;
  const compared = x.themes.filter((t) => t.rate !== null && t.previousRate !== null);
  const shrank = compared.filter((t) => t.rate! < t.previousRate!);
  const grew = compared.filter((t) => t.rate! > t.previousRate!);
  if (!compared.length)
    return (
      <p className="muted">
        No complaint themes to compare with {x.previous.name} yet (no rated answers of one of them).
      </p>
    );
  return (
    <>
      <BarChart
        title={`Change in complaints per 1,000 rated answers against ${x.previous.name} (negative: fewer)`}
        rows={compared.map((t) => ({ label: t.label, value: (t.rate! - t.previousRate!) * 1000 }))}
      />
      <Table
        caption={`Complaint themes that shrank against ${x.previous.name} (complaints per 1,000 rated answers)`}
        head={['Theme', 'Before', 'Now']}
        rows={shrank.map((t) => [t.label, perThousand(t.previousRate), perThousand(t.rate)])}
      />
      {grew.length > 0 && (
        <Table
          caption={`Complaint themes that grew against ${x.previous.name}`}
          head={['Theme', 'Before', 'Now']}
          rows={grew.map((t) => [t.label, perThousand(t.previousRate), perThousand(t.rate)])}
        />
      )}
    </>
  );
}

export function WhatChangedPage() {
  const changes = useReport<{ items: Change[] }>('/dashboard/what-changed');
  return (
    <Page title="What changed">
      <Loading state={changes} what="model versions">
        {(c) =>
          c.items.length === 0 ? (
            <p className="muted">No registered models yet.</p>
          ) : (
            [...c.items].reverse().map((x) => (
              <article key={x.model.id} aria-label={x.model.name}>
                <h2>
                  {x.model.name} <span className={`stage ${x.model.stage}`}>{x.model.stage}</span>
                </h2>
                <p>
                  {x.previous
                    ? relation[x.previous.relation](x.previous.name)
                    : 'The first version on its route.'}{' '}
                  Registered {fmt.time(x.model.createdAt)}.
                </p>
                <LearnedFrom x={x} />
                <PromotedBy x={x} />
                <Themes x={x} />
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
            ))
          )
        }
      </Loading>
    </Page>
  );
}
