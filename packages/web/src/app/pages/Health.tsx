import {
  type HealthBucketName,
  type HealthWindowName,
  healthBucketFits,
  healthBucketNames,
  healthWindowNames,
} from '@ratchet/core';
import { useState } from 'react';
import { LineChart } from '../charts.js';
import { useApi } from '../hooks.js';
import { fmt, Loading, Table } from '../ui.js';

/** One bucket of GET /api/v1/dashboard/health (see the store's ModelHealthBucket). */
interface HealthBucket {
  t: number;
  calls: number;
  errors: number;
  errorRate: number;
  inputTokens: number;
  outputTokens: number;
  latencyP50Ms: number | null;
  latencyP95Ms: number | null;
  thumbsUp: number;
  thumbsDown: number;
  satisfaction: number | null;
}

interface HealthSeries {
  route: string | null;
  model: string;
  stage: string | null;
  buckets: HealthBucket[];
}

/** The charts of a route: one line per model version, a point per bucket that has one. */
const charts: { title: string; value: (b: HealthBucket) => number | null }[] = [
  { title: 'latency p50 (ms)', value: (b) => b.latencyP50Ms },
  { title: 'latency p95 (ms)', value: (b) => b.latencyP95Ms },
  { title: 'error rate', value: (b) => b.errorRate },
  { title: 'output tokens', value: (b) => b.outputTokens },
  { title: 'satisfaction (thumbs-up share)', value: (b) => b.satisfaction },
];

/**
 * Each model version's production health over time, per route: latency p50/p95, error rate,
 * tokens and satisfaction per hour or day (what the gateway logged for it), with the latest
 * bucket's numbers in a table, so a model that got worse after a promotion is seen next to the
 * one it replaced.
 */
export function ProductionHealth() {
  const [period, setPeriod] = useState<HealthWindowName>('7d');
  const [bucket, setBucket] = useState<HealthBucketName>('hour');
  // A window too long for hour buckets is shown per day (the API refuses hours there).
  const hoursFit = healthBucketFits(period, 'hour');
  const effective = hoursFit ? bucket : 'day';
  const health = useApi<{ items: HealthSeries[] }>(
    `/dashboard/health?window=${period}&bucket=${effective}`,
    30_000,
  );
  const format = effective === 'day' ? fmt.day : fmt.time;
  return (
    <>
      <form className="controls" aria-label="Production health window" onSubmit={(e) => e.preventDefault()}>
        <label>
          Window{' '}
          <select
            name="window"
            value={period}
            onChange={(e) => setPeriod(e.target.value as HealthWindowName)}
          >
            {healthWindowNames.map((w) => (
              <option key={w} value={w}>
                last {w}
              </option>
            ))}
          </select>
        </label>
        <label>
          Per{' '}
          <select
            name="bucket"
            value={effective}
            disabled={!hoursFit}
            onChange={(e) => setBucket(e.target.value as HealthBucketName)}
          >
            {healthBucketNames.map((b) => (
              <option key={b} value={b}>
                {b}
              </option>
            ))}
          </select>
        </label>
      </form>
      <Loading state={health} what="production health">
        {(h) => <HealthByRoute series={h.items} format={format} />}
      </Loading>
    </>
  );
}

function HealthByRoute({ series, format }: { series: HealthSeries[]; format: (t: number) => string }) {
  if (!series.length) return <p className="muted">No calls in this window.</p>;
  const routes = [...new Set(series.map((s) => s.route))];
  return (
    <>
      {routes.map((route) => {
        const mine = series.filter((s) => s.route === route);
        const name = route ?? '(no route)';
        return (
          <article key={name} aria-label={`production health of ${name}`}>
            <h3>{name}</h3>
            <Table
              caption={`${name}: each model's latest bucket`}
              head={[
                'Model',
                'Stage',
                'Since',
                'Calls',
                'p50 ms',
                'p95 ms',
                'Error rate',
                'Tokens in / out',
                'Satisfaction',
              ]}
              rows={mine.map((s) => {
                const b = s.buckets.at(-1)!;
                return [
                  s.model,
                  s.stage ?? '–',
                  format(b.t),
                  b.calls,
                  fmt.num(b.latencyP50Ms, 0),
                  fmt.num(b.latencyP95Ms, 0),
                  fmt.pct(b.errorRate),
                  `${b.inputTokens} / ${b.outputTokens}`,
                  b.satisfaction === null
                    ? '–'
                    : `${fmt.pct(b.satisfaction)} of ${b.thumbsUp + b.thumbsDown}`,
                ];
              })}
            />
            <div className="reports">
              {charts.map((c) => (
                <LineChart
                  key={c.title}
                  title={`${name}: ${c.title}`}
                  formatX={format}
                  height={140}
                  dots
                  series={mine.map((s) => ({
                    name: s.model,
                    points: s.buckets.flatMap((b) => {
                      const v = c.value(b);
                      return v === null ? [] : [[b.t, v] as [number, number]];
                    }),
                  }))}
                />
              ))}
            </div>
          </article>
        );
      })}
    </>
  );
}
