import { DifferenceChart, LineChart, normalDensity, ProbabilityChart, Timeline } from '../charts.js';
import { useApi } from '../hooks.js';
import { fmt, Loading, Table } from '../ui.js';

interface Comparison {
  variant: string;
  metric: string;
  role: 'primary' | 'guardrail';
  difference: number;
  sequentialInterval: { lower: number; upper: number };
  sequentialPValue: number;
  probabilityToBeat: number;
  expectedLoss: number;
  credibleInterval: { lower: number; upper: number };
  verdict: 'better' | 'worse' | 'inconclusive';
  /** The metric's direction (core's definition): false for a regenerate rate. */
  higherIsBetter?: boolean;
}

interface Look {
  at: number;
  decision: string;
  variant: string | null;
  reasons: string[];
  weights?: Record<string, number>;
  actor: string;
}

export interface ExperimentSummary {
  id: string;
  name: string;
  status: string;
  startedAt: number;
}

/** A metric over users: each user's mean of their own ratings, then the mean over users. */
interface PerUser {
  users: number;
  events: number;
  mean: number | null;
  standardError: number | null;
  interval: { lower: number; upper: number } | null;
}

function perUser(m: PerUser, pct = false): string {
  if (m.mean === null) return '–';
  const f = (x: number) => (pct ? fmt.pct(x) : fmt.num(x));
  const i = m.interval ? ` (${f(m.interval.lower)} … ${f(m.interval.upper)})` : '';
  return `${f(m.mean)}${i}, ${m.users} users`;
}

interface ExperimentStatus {
  experiment: ExperimentSummary & {
    route: string;
    control: string;
    metric: string;
    engine: string;
    bandit: boolean;
    stoppedAt: number | null;
    decisionRule: {
      ship?: { minProbabilityToBeat?: number };
      credibleLevel?: number;
    };
    history: Look[];
  };
  variants: {
    name: string;
    model: string;
    weight: number;
    users: number;
    thumbsUpRate: PerUser & { up: number };
    meanReward: PerUser;
    stars: PerUser;
    /** Every defined metric, implicit ones too, with its direction. */
    metrics?: Record<
      string,
      PerUser & { metric: string; label: string; source: string; higherIsBetter: boolean; signalled?: number }
    >;
    otherSources: {
      source: string;
      thumbs: { up: number; total: number; rate: number | null };
      stars: { n: number; mean: number | null };
    }[];
  }[];
  decision: { decision: string; variant: string | null; reasons: string[]; comparisons: Comparison[] };
  adjustments?: {
    flaggedRatersExcluded: boolean;
    cuped: { prePeriodDays: number; theta: number; coveredShare: number; varianceReduction: number } | null;
    mixture: { expectedEffect: number } | { tauInStandardDeviations: number };
  };
  weights: Record<string, number> | null;
}

/** Which adjustments ran on the primary metric (CUPED, the tuned mixture) and what they removed. */
function Adjustments({ a }: { a: NonNullable<ExperimentStatus['adjustments']> }) {
  const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
  return (
    <p className="muted">
      {a.flaggedRatersExcluded ? 'Ratings of raters calibration flagged are left out. ' : ''}
      {a.cuped
        ? `Adjusted for each user's ${a.cuped.prePeriodDays} days before the start (CUPED, theta ${a.cuped.theta.toPrecision(3)}, ${pct(a.cuped.coveredShare)} of users had them): variance ${pct(a.cuped.varianceReduction)} lower. `
        : 'No pre-period adjustment. '}
      {'expectedEffect' in a.mixture
        ? `Sequential test tuned to an effect of ${a.mixture.expectedEffect}.`
        : `Sequential test mixture ${a.mixture.tauInStandardDeviations} standard deviations wide.`}
    </p>
  );
}

const decisionText: Record<string, string> = {
  ship: 'Ship',
  keep_running: 'Keep running',
  stop_for_harm: 'Stop for harm',
  stopped: 'Stopped',
};
const decisionColour: Record<string, string> = {
  'Keep running': '#6b7280',
  Ship: '#059669',
  'Stop for harm': '#dc2626',
  Stopped: '#111827',
};

/** The decision recorded at each look, and a bandit's traffic weights over the looks. */
function Looks({ e }: { e: ExperimentStatus['experiment'] }) {
  if (!e.history.length)
    return <p className="muted">No look recorded yet (the loop, or POST …/analyze, records one).</p>;
  const weighted = e.history.filter((h) => h.weights);
  return (
    <>
      <Timeline
        title={`${e.name}: decision at each of ${e.history.length} recorded looks`}
        colours={decisionColour}
        marks={e.history.map((h) => {
          const kind = decisionText[h.decision] ?? h.decision;
          return { t: h.at, kind, note: `${fmt.time(h.at)} ${kind}${h.variant ? ` (${h.variant})` : ''}` };
        })}
      />
      {weighted.length > 1 && (
        <LineChart
          title={`${e.name}: traffic weight of each variant at each look (Thompson sampling)`}
          formatX={fmt.day}
          series={Object.keys(weighted[0]!.weights!).map((name) => ({
            name,
            points: weighted.map((h) => [h.at, h.weights![name] ?? 0] as [number, number]),
          }))}
        />
      )}
    </>
  );
}

/** Each variant's posterior of the thumbs-up rate over users (normal: mean of user means, its standard error). */
function RatePosteriors({ s }: { s: ExperimentStatus }) {
  const arms = s.variants.flatMap((v) => {
    const m = v.thumbsUpRate;
    return m.mean !== null && m.standardError
      ? [{ name: `${v.name} (${m.users} users)`, mean: m.mean, sd: m.standardError }]
      : [];
  });
  if (arms.length < s.variants.length)
    return <p className="muted">Too few users with thumbs ratings yet to show each variant's posterior.</p>;
  const from = Math.max(0, Math.min(...arms.map((a) => a.mean - 4 * a.sd)));
  const to = Math.min(1, Math.max(...arms.map((a) => a.mean + 4 * a.sd)));
  return (
    <LineChart
      title={`${s.experiment.name}: posterior of each variant's thumbs-up rate per user`}
      formatX={(x) => `${(x * 100).toFixed(0)}%`}
      series={arms.map(({ name, mean, sd }) => ({ name, points: normalDensity(mean, sd, from, to) }))}
    />
  );
}

/** One experiment: the decision now, its posteriors and intervals as charts, and its looks. */
function ExperimentReport({ id }: { id: string }) {
  const status = useApi<ExperimentStatus>(`/experiments/${encodeURIComponent(id)}`);
  return (
    <Loading state={status} what="experiment status">
      {(s) => {
        const e = s.experiment;
        const threshold = e.decisionRule.ship?.minProbabilityToBeat ?? 0.95;
        const level = Math.round((e.decisionRule.credibleLevel ?? 0.95) * 100);
        const label = (c: Comparison) =>
          `${c.variant} · ${c.metric.replaceAll('_', ' ')}${c.higherIsBetter === false ? ' (lower is better)' : ''}`;
        const implicit = s.variants.flatMap((v) =>
          Object.values(v.metrics ?? {})
            .filter((m) => m.source === 'implicit' && (m.signalled ?? 0) > 0)
            .map((m) => ({ variant: v.name, m })),
        );
        return (
          <>
            <p>
              Route {e.route}, {e.engine} engine{e.bandit ? ' (bandit)' : ''}, metric{' '}
              {`${e.metric.replaceAll('_', ' ')}${s.variants[0]?.metrics?.[e.metric]?.higherIsBetter === false ? ' (lower is better)' : ''};`}{' '}
              control {e.control}. {e.status === 'running' ? 'Running' : 'Stopped'} since{' '}
              {fmt.time(e.stoppedAt ?? e.startedAt)}.
            </p>
            <p>
              <strong className={`decision ${s.decision.decision}`}>
                Decision now: {decisionText[s.decision.decision] ?? s.decision.decision}
                {s.decision.variant ? ` (${s.decision.variant})` : ''}
              </strong>
              . {s.decision.reasons.join('; ')}
            </p>
            {s.adjustments && <Adjustments a={s.adjustments} />}
            {e.metric === 'thumbs_up_rate' && <RatePosteriors s={s} />}
            {s.decision.comparisons.length > 0 && (
              <>
                <DifferenceChart
                  title={`${e.name}: each variant minus ${e.control}, ${level}% credible and always-valid intervals`}
                  rows={s.decision.comparisons.map((c) => ({
                    label: label(c),
                    difference: c.difference,
                    credible: c.credibleInterval,
                    sequential: c.sequentialInterval,
                    verdict: c.verdict,
                  }))}
                />
                <ProbabilityChart
                  title={`${e.name}: probability to beat ${e.control}`}
                  threshold={threshold}
                  rows={s.decision.comparisons.map((c) => ({ label: label(c), value: c.probabilityToBeat }))}
                />
              </>
            )}
            <Table
              caption={`${e.name}: variants, per user (each user's mean of their own ratings; ${level}% intervals)`}
              head={[
                'Variant',
                'Model',
                'Weight',
                'Users',
                'Thumbs up',
                'Thumbs-up rate',
                'Stars',
                'Mean reward',
              ]}
              rows={s.variants.map((v) => [
                v.name,
                v.model,
                fmt.num(s.weights?.[v.name] ?? v.weight),
                v.users,
                `${v.thumbsUpRate.up} of ${v.thumbsUpRate.events}`,
                perUser(v.thumbsUpRate, true),
                perUser(v.stars),
                perUser(v.meanReward),
              ])}
            />
            {implicit.length > 0 && (
              <Table
                caption={`${e.name}: what users did with the answers (each user's share of their answers; every user served counts)`}
                head={['Variant', 'Signal', 'Direction', 'Answers', 'Per user']}
                rows={implicit.map(({ variant, m }) => [
                  variant,
                  m.label,
                  m.higherIsBetter ? 'higher is better' : 'lower is better',
                  `${m.signalled} of ${m.events}`,
                  perUser(m, true),
                ])}
              />
            )}
            {s.variants.some((v) => v.otherSources.length > 0) && (
              <Table
                caption={`${e.name}: AI and annotator labels (shown apart, not in the decision)`}
                head={['Variant', 'Source', 'Thumbs up', 'Stars']}
                rows={s.variants.flatMap((v) =>
                  v.otherSources.map((o) => [
                    v.name,
                    o.source,
                    `${fmt.pct(o.thumbs.rate)} of ${o.thumbs.total}`,
                    o.stars.n ? `${fmt.num(o.stars.mean)} (n=${o.stars.n})` : '–',
                  ]),
                )}
              />
            )}
            <Table
              caption={`${e.name}: comparisons`}
              head={[
                'Comparison',
                'Difference',
                `${level}% credible`,
                'Always-valid',
                'p',
                'P(better)',
                'Expected loss',
              ]}
              rows={s.decision.comparisons.map((c) => [
                `${label(c)} (${c.role})`,
                fmt.num(c.difference, 3),
                `${fmt.num(c.credibleInterval.lower, 3)} … ${fmt.num(c.credibleInterval.upper, 3)}`,
                `${fmt.num(c.sequentialInterval.lower, 3)} … ${fmt.num(c.sequentialInterval.upper, 3)}`,
                fmt.num(c.sequentialPValue, 3),
                fmt.pct(c.probabilityToBeat),
                fmt.num(c.expectedLoss, 4),
              ])}
            />
            <Looks e={e} />
            <Table
              caption={`${e.name}: decisions recorded at each look`}
              head={['Time', 'Decision', 'Variant', 'Reasons', 'By']}
              rows={[...e.history]
                .reverse()
                .map((h) => [
                  fmt.time(h.at),
                  decisionText[h.decision] ?? h.decision,
                  h.variant ?? '–',
                  h.reasons.join('; '),
                  h.actor,
                ])}
            />
          </>
        );
      }}
    </Loading>
  );
}

/** The newest experiments, each with its status: older ones are a click away in the list. */
export function Experiments({ items, shown = 5 }: { items: ExperimentSummary[]; shown?: number }) {
  if (!items.length) return <p className="muted">No experiments yet.</p>;
  return (
    <>
      {items.slice(0, shown).map((x) => (
        <article key={x.id} aria-label={`Experiment ${x.name}`} className="experiment">
          <h3>{x.name}</h3>
          <ExperimentReport id={x.id} />
        </article>
      ))}
      {items.length > shown && (
        <Table
          caption="Older experiments"
          head={['Experiment', 'Status', 'Started']}
          rows={items.slice(shown).map((x) => [x.name, x.status, fmt.time(x.startedAt)])}
        />
      )}
    </>
  );
}
