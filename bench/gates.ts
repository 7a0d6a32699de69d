// The gates bench: how often the offline evaluation gates turn away a better candidate or let a
// worse one pass (issue 19, "gates that know their uncertainty"). Planted candidates 10 points
// better, equal, or 10 points worse than production, judged item by item by a noisy judge and a
// noisy reward model, summarized and gated by the product's own code (summarizeEvaluation,
// applyGates). Seeded; pure computation.
import {
  applyGates,
  type EvaluationItemResult,
  type PairVerdict,
  SeededRandom,
  summarizeEvaluation,
  winRate,
} from '../packages/core/src/index.js';
import type { Bench, BenchContext, BenchOutcome } from './lib/bench.js';
import { round } from './lib/results.js';

interface Config {
  candidates: number;
  /** Held-out items per evaluation: the demo's 40, and a larger suite. */
  itemCounts: number[];
  productionQuality: number;
  segments: number;
  /** How often the judge reads an answer's goodness right. */
  judgeAccuracy: number;
  /** Noise of the reward model's score around an answer's goodness (0 or 1). */
  rewardNoise: number;
  /** Liked held-out answers scored for perplexity. */
  perplexityAnswers: number;
}

const FULL: Config = {
  candidates: 1000,
  itemCounts: [40, 150],
  productionQuality: 0.5,
  segments: 4,
  judgeAccuracy: 0.85,
  rewardNoise: 0.6,
  perplexityAnswers: 20,
};
const TINY: Config = { ...FULL, candidates: 50, itemCounts: [40] };

const scenarios = { better10: 0.1, equal: 0, worse10: -0.1 } as const;
type Scenario = keyof typeof scenarios;

function normal(rng: SeededRandom): number {
  const u = Math.max(rng.uniform(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.uniform());
}

/** One planted evaluation: per item, both answers' true goodness and what judge and reward model said. */
function plantedEvaluation(
  rng: SeededRandom,
  c: Config,
  items: number,
  delta: number,
): EvaluationItemResult[] {
  const out: EvaluationItemResult[] = [];
  for (let i = 0; i < items; i++) {
    const good = {
      candidate: rng.uniform() < c.productionQuality + delta,
      baseline: rng.uniform() < c.productionQuality,
    };
    const seen = (g: boolean) => (rng.uniform() < c.judgeAccuracy ? g : !g);
    const [jc, jb] = [seen(good.candidate), seen(good.baseline)];
    const judge: PairVerdict = jc === jb ? 'tie' : jc ? 'candidate' : 'baseline';
    const score = (g: boolean) => (g ? 1 : 0) + c.rewardNoise * normal(rng);
    const [rc, rb] = [score(good.candidate), score(good.baseline)];
    out.push({
      index: i,
      suite: 'heldout',
      itemId: `i${i}`,
      category: null,
      segments: [`tag:s${i % c.segments}`],
      prompt: [{ role: 'user', content: 'q' }],
      reference: null,
      referenceKind: null,
      candidate: { output: '', reward: rc },
      baseline: { output: '', reward: rb },
      judge,
      judgeOrders: null,
      rewardVerdict: rc > rb ? 'candidate' : 'baseline',
    });
  }
  return out;
}

/** Per-answer log perplexities of two models that write equally well. */
function perplexityOf(rng: SeededRandom, c: Config) {
  const perAnswer = Array.from({ length: c.perplexityAnswers }, () => {
    const base = 0.3 + 0.1 * normal(rng);
    return { baseline: base, candidate: base + 0.05 * normal(rng) };
  });
  const ppl = (side: 'candidate' | 'baseline') =>
    Math.exp(perAnswer.reduce((a, x) => a + x[side], 0) / perAnswer.length);
  return { candidate: ppl('candidate'), baseline: ppl('baseline'), perAnswer };
}

/**
 * The rule before gates had intervals, for comparison: a segment failed on a point estimate under
 * 40%, and the demo let the overall win rate pass at a lower bound over 20%.
 */
function pointEstimateRule(items: EvaluationItemResult[], c: Config): 'pass' | 'fail' {
  for (const kind of ['judge', 'rewardVerdict'] as const) {
    const all = items.map((i) => i[kind]!);
    if (winRate(all).lower <= 0.2) return 'fail';
    for (let s = 0; s < c.segments; s++) {
      const seg = items.filter((i) => i.segments[0] === `tag:s${s}`).map((i) => i[kind]!);
      if (seg.length >= 5 && winRate(seg).rate < 0.4) return 'fail';
    }
  }
  return 'pass';
}

async function run(ctx: BenchContext): Promise<BenchOutcome> {
  const c = ctx.tiny ? TINY : FULL;
  const metrics: Record<string, number> = {};
  const rng = new SeededRandom(19);
  const started = Date.now();
  for (const items of c.itemCounts) {
    for (const scenario of Object.keys(scenarios) as Scenario[]) {
      const counts = { pass: 0, fail: 0, undecided: 0, oldFail: 0 };
      for (let k = 0; k < c.candidates; k++) {
        const planted = plantedEvaluation(rng, c, items, scenarios[scenario]);
        const gate = applyGates(summarizeEvaluation(planted, { perplexity: perplexityOf(rng, c) }));
        counts[gate.decision]++;
        if (pointEstimateRule(planted, c) === 'fail') counts.oldFail++;
      }
      const rate = (n: number) => round(n / c.candidates, 4);
      const at = `${scenario}_${items}items`;
      metrics[`gate_pass_${at}_rate`] = rate(counts.pass);
      metrics[`gate_reject_${at}_rate`] = rate(counts.fail);
      metrics[`gate_undecided_${at}_rate`] = rate(counts.undecided);
      metrics[`gate_point_estimate_reject_${at}_rate`] = rate(counts.oldFail);
      ctx.log(
        `${at}: pass ${counts.pass}, fail ${counts.fail}, undecided ${counts.undecided} (point-estimate rule failed ${counts.oldFail})`,
      );
    }
  }
  // The two figures: the worst over the item counts.
  metrics.gate_false_reject_rate_better10 = Math.max(
    ...c.itemCounts.map((n) => metrics[`gate_reject_better10_${n}items_rate`]!),
  );
  metrics.gate_false_accept_rate_worse10 = Math.max(
    ...c.itemCounts.map((n) => metrics[`gate_pass_worse10_${n}items_rate`]!),
  );
  metrics.gate_candidates_per_scenario_count = c.candidates;
  metrics.gate_simulation_s = round((Date.now() - started) / 1000, 2);
  return {
    metrics,
    notes: `${c.candidates} planted candidates per scenario (production ${c.productionQuality * 100}% good answers; candidate +10, 0 or -10 points) at ${c.itemCounts.join(' and ')} held-out items in ${c.segments} segments; a judge reading each answer right ${c.judgeAccuracy * 100}% of the time (ties when it sees both alike) and a reward model with N(0, ${c.rewardNoise}) noise on a 0/1 goodness, both gated (source all), perplexity of ${c.perplexityAnswers} answers equal in truth; summarizeEvaluation + applyGates with default gates (95%, Bonferroni over segments). A false reject is a 'fail' for a better candidate; a false accept a 'pass' for a worse one ('undecided' goes to the canary). gate_point_estimate_* is the rule before intervals (segment win rate under 40% fails; overall lower bound over 20% passes). Seeded.`,
  };
}

export const gatesBench: Bench = {
  name: 'gates',
  summary: 'offline gates on planted candidates: false rejects of better ones, false accepts of worse ones',
  keyMetrics: [
    'gate_false_reject_rate_better10',
    'gate_false_accept_rate_worse10',
    'gate_reject_worse10_150items_rate',
    'gate_point_estimate_reject_better10_40items_rate',
  ],
  run,
};
