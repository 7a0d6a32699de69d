import { betaDensity, DifferenceChart, LineChart, ProbabilityChart, Timeline } from '../charts.js';
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

interface ExperimentStatus {
  experiment: ExperimentSummary & {
    route: string;
    control: string;
    metric: string;
    engine: string;
    bandit: boolean;
    stoppedAt: number | null;
    decisionRule: {
      prior?: { alpha: number; beta: number };
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
    thumbsUpRate: { up: number; total: number; rate: number | null };
    meanReward: { n: number; mean: number | null };
    stars: { n: number; mean: number | null };
  }[];
  decision: { decision: string; variant: string | null; reasons: string[]; comparisons: Comparison[] };
  weights: Record<string, number> | null;
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

/** Each variant's Beta posterior of the thumbs-up rate, over the range where they have mass. */
function RatePosteriors({ s }: { s: ExperimentStatus }) {
  const prior = s.experiment.decisionRule.prior ?? { alpha: 1, beta: 1 };
  const arms = s.variants.map((v) => ({
    name: `${v.name} (${v.thumbsUpRate.up}/${v.thumbsUpRate.total})`,
    a: prior.alpha + v.thumbsUpRate.up,
    b: prior.beta + v.thumbsUpRate.total - v.thumbsUpRate.up,
  }));
  if (s.variants.every((v) => v.thumbsUpRate.total === 0))
    return <p className="muted">No thumbs ratings in the experiment yet: the posteriors are the prior.</p>;
  const spread = arms.map(({ a, b }) => {
    const mean = a / (a + b);
    const sd = Math.sqrt((a * b) / ((a + b) ** 2 * (a + b + 1)));
    return [mean - 4 * sd, mean + 4 * sd];
  });
  const from = Math.max(0, Math.min(...spread.map((r) => r[0]!)));
  const to = Math.min(1, Math.max(...spread.map((r) => r[1]!)));
  return (
    <LineChart
      title={`${s.experiment.name}: posterior of each variant's thumbs-up rate`}
      formatX={(x) => `${(x * 100).toFixed(0)}%`}
      series={arms.map(({ name, a, b }) => ({ name, points: betaDensity(a, b, from, to) }))}
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
        const label = (c: Comparison) => `${c.variant} · ${c.metric.replaceAll('_', ' ')}`;
        return (
          <>
            <p>
              Route {e.route}, {e.engine} engine{e.bandit ? ' (bandit)' : ''}, metric{' '}
              {e.metric.replaceAll('_', ' ')}; control {e.control}.{' '}
              {e.status === 'running' ? 'Running' : 'Stopped'} since {fmt.time(e.stoppedAt ?? e.startedAt)}.
            </p>
            <p>
              <strong className={`decision ${s.decision.decision}`}>
                Decision now: {decisionText[s.decision.decision] ?? s.decision.decision}
                {s.decision.variant ? ` (${s.decision.variant})` : ''}
              </strong>
              . {s.decision.reasons.join('; ')}
            </p>
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
              caption={`${e.name}: variants`}
              head={['Variant', 'Model', 'Weight', 'Users', 'Thumbs up', 'Stars', 'Mean reward']}
              rows={s.variants.map((v) => [
                v.name,
                v.model,
                fmt.num(s.weights?.[v.name] ?? v.weight),
                v.users,
                `${fmt.pct(v.thumbsUpRate.rate)} of ${v.thumbsUpRate.total}`,
                `${fmt.num(v.stars.mean)} (n=${v.stars.n})`,
                `${fmt.num(v.meanReward.mean)} (n=${v.meanReward.n})`,
              ])}
            />
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
