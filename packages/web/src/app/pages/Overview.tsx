import type { Model } from '@ratchet/core';
import { BarChart, IntervalChart, LineChart } from '../charts.js';
import { useApi, useReport } from '../hooks.js';
import { fmt, Loading, Page, Table } from '../ui.js';

interface Overview {
  activity: { t: number; interactions: number; ratings: number }[];
  satisfaction: {
    model: string;
    thumbs: number;
    upShare: number | null;
    upLower: number | null;
    upUpper: number | null;
    stars: number;
    starsMean: number | null;
    starsLower: number | null;
    starsUpper: number | null;
  }[];
  criteria: { criterion: string; group: string | null; n: number; meanReward: number }[];
  production: Model[];
}

interface DeadLetters {
  items: {
    id: string;
    interactionId: string;
    reason: string;
    error: string;
    repaired: boolean;
    createdAt: number;
  }[];
  countsByReason: Record<string, number>;
}

export function OverviewPage() {
  const overview = useReport<Overview>('/dashboard/overview?days=30');
  const experiments = useApi<{ items: { id: string; route?: string; status?: string; name?: string }[] }>(
    '/experiments',
  );
  const deadLetters = useApi<DeadLetters>('/dead-letters?limit=5');
  return (
    <Page title="Overview">
      <Loading state={overview} what="overview">
        {(o) => (
          <>
            <h2>Current production models</h2>
            <Table
              caption="Production model per route"
              head={['Route', 'Model', 'Base', 'Since']}
              rows={o.production.map((m) => [m.route ?? '–', m.name, m.baseModel, fmt.time(m.updatedAt)])}
            />
            <h2>Interactions and ratings per day</h2>
            <LineChart
              title="Interactions and feedback events per day (last 30 days)"
              formatX={fmt.day}
              series={[
                { name: 'interactions', points: o.activity.map((b) => [b.t, b.interactions]) },
                { name: 'feedback', points: o.activity.map((b) => [b.t, b.ratings]) },
              ]}
            />
            <h2>Satisfaction by model</h2>
            <IntervalChart
              title="Thumbs-up share by model, with 95% intervals"
              domain={[0, 1]}
              rows={o.satisfaction
                .filter((s) => s.upShare !== null)
                .map((s) => ({
                  label: s.model,
                  value: s.upShare!,
                  lower: s.upLower!,
                  upper: s.upUpper!,
                  note: `n=${s.thumbs}`,
                }))}
            />
            <IntervalChart
              title="Mean stars by model, with 95% intervals"
              domain={[1, 5]}
              rows={o.satisfaction
                .filter((s) => s.starsLower !== null)
                .map((s) => ({
                  label: s.model,
                  value: s.starsMean!,
                  lower: Math.max(1, s.starsLower!),
                  upper: Math.min(5, s.starsUpper!),
                  note: `n=${s.stars}`,
                }))}
            />
            <h2>Criteria breakdown</h2>
            <BarChart
              title="Mean criterion score (−1..1) by criterion and model"
              rows={o.criteria.map((c) => ({
                label: `${c.criterion} · ${c.group ?? '–'}`,
                value: c.meanReward,
              }))}
            />
          </>
        )}
      </Loading>
      <h2>Running experiments</h2>
      <Loading state={experiments} what="experiments">
        {(e) => (
          <Table
            caption="Experiments"
            head={['Experiment', 'Route', 'Status']}
            rows={e.items
              .filter((x) => x.status === undefined || x.status === 'running')
              .map((x) => [x.name ?? x.id, x.route ?? '–', x.status ?? '–'])}
          />
        )}
      </Loading>
      <h2>Dead letters</h2>
      <Loading state={deadLetters} what="dead letters">
        {(d) => {
          const counts = Object.entries(d.countsByReason);
          const total = counts.reduce((sum, [, n]) => sum + n, 0);
          return (
            <>
              <p>
                {total === 0
                  ? 'Every gateway call was stored as it arrived.'
                  : `${total} gateway calls could not be stored as they arrived: ${counts.map(([r, n]) => `${r} ${n}`).join(', ')}.`}
              </p>
              <Table
                caption="Latest dead letters"
                head={['When', 'Interaction', 'Reason', 'Repaired copy stored', 'Error']}
                rows={d.items.map((x) => [
                  fmt.time(x.createdAt),
                  x.interactionId,
                  x.reason,
                  x.repaired ? 'yes' : 'no',
                  x.error.slice(0, 200),
                ])}
              />
            </>
          );
        }}
      </Loading>
    </Page>
  );
}
