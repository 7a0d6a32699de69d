import { BarChart, IntervalChart, LineChart } from '../charts.js';
import { useApi, useReport } from '../hooks.js';
import type { Model } from '../types.js';
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

export function OverviewPage() {
  const overview = useReport<Overview>('/dashboard/overview?days=30');
  const experiments = useApi<{ items: { id: string; route?: string; status?: string; name?: string }[] }>(
    '/experiments',
  );
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
    </Page>
  );
}
