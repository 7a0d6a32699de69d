import { z } from 'zod';
import { estimatedJaccard, lshBands, MinHasher, shingles } from '../curation/near-duplicates.js';
import { parseInput } from '../errors.js';
import { type DatasetBuilder, type DatasetMethod, datasetBuilders } from '../methods.js';

/**
 * What is known about an interaction that could be sent for rating. Every signal is optional:
 * an unrated interaction has no rater spread, one the reward model has not scored has no
 * probability, and so on; a missing signal counts as uninformative (zero), not as certain.
 */
export interface RatingCandidate {
  id: string;
  /** The prompt (for novelty and for spreading the picks over different questions). */
  prompt: string;
  /** P(good) from the reward model, in [0, 1]: most informative near 0.5. */
  rewardModelProbability?: number;
  /** Posterior sd of the calibrated reward (on [-1, 1]); wide = uncertain. */
  calibratedSd?: number;
  /** Spread of the human ratings' normalized rewards (sd on [-1, 1]). */
  raterSpread?: number;
  /** |judge reward - human calibrated reward| on [-1, 1] scales, when both exist. */
  judgeHumanGap?: number;
  /** Whether any person rated it already. */
  humanRated: boolean;
  /**
   * What people said about rated answers whose text is similar (see `similarRatedRewards`): the
   * similarity-weighted mean calibrated reward on [-1, 1] and the total similarity behind it.
   */
  similarRated?: { reward: number; weight: number };
}

/**
 * What a rating is for. `uncertainty`: teach the reward model where it cannot tell (methods that
 * learn from both signs: kto, rwsft, dpo, reward). `positives`: find answers people like, for a
 * dataset built from liked answers only (sft), where a rating that confirms a good answer adds a
 * row and one that finds a bad answer adds nothing.
 */
export const activeLearningObjectives = ['uncertainty', 'positives'] as const;
export const ActiveLearningObjective = z.enum(activeLearningObjectives);
export type ActiveLearningObjective = z.infer<typeof ActiveLearningObjective>;

/** The objective that serves a dataset method best: positives for sft, which keeps only liked answers. */
export function activeLearningObjectiveFor(method: string): ActiveLearningObjective {
  const builder: DatasetBuilder | undefined = datasetBuilders[method as DatasetMethod];
  return builder?.keeps === 'liked-answers' ? 'positives' : 'uncertainty';
}

const Weights = z.strictObject({
  /** Expected chance that a person likes an unrated answer (the `positives` objective's currency). */
  positive: z.number().min(0).optional(),
  uncertainty: z.number().min(0).optional(),
  disagreement: z.number().min(0).optional(),
  novelty: z.number().min(0).optional(),
});
type Weights = Required<z.output<typeof Weights>>;

/**
 * Default weights per objective. Under `positives` a little uncertainty and novelty stay in the
 * score, as an exploration bonus: without them the queue would only ever confirm the kinds of
 * answers already known to be liked.
 */
const defaultWeights: Record<ActiveLearningObjective, Weights> = {
  uncertainty: { positive: 0, uncertainty: 1, disagreement: 0.7, novelty: 0.5 },
  positives: { positive: 1, uncertainty: 0.15, disagreement: 0, novelty: 0.15 },
};

export const ActiveLearningOptions = z.strictObject({
  /** How many to pick (the rating budget of this round). */
  budget: z.number().int().min(0).max(100_000),
  objective: ActiveLearningObjective.default('uncertainty'),
  /** Weights of the signals in the score; those left out take the objective's defaults. */
  weights: Weights.default({}),
  /** Picks whose prompts are at least this similar (estimated Jaccard) to an earlier pick are skipped. */
  diversityThreshold: z.number().min(0).max(1).default(0.8),
  /** Prompts already well covered by ratings, for novelty. */
  ratedPrompts: z.array(z.string()).default([]),
});
export type ActiveLearningOptions = z.input<typeof ActiveLearningOptions>;

export interface RatingPick {
  id: string;
  score: number;
  /** Expected chance that a person likes it, for an unrated answer; 0 for a rated one. */
  positive: number;
  uncertainty: number;
  disagreement: number;
  novelty: number;
  /** Why it was picked, for the annotator and the audit log. */
  reason: string;
}

const clamp01 = (x: number) => Math.max(0, Math.min(1, x));

/**
 * How much the reward model's call counts against similar rated answers, in units of one fully
 * similar rated answer: one near-copy that people rated outweighs a reward model trained on a
 * handful of pairs (bench/README.md, feedback-efficiency: its ranking was little better than chance).
 */
const MODEL_PRIOR_WEIGHT = 1;

/**
 * P(a person likes it): the reward model's call (0.5 without one), moved toward what people said
 * about similar rated answers in proportion to how much similar evidence there is. Undefined when
 * neither signal exists.
 */
export function expectedGood(c: RatingCandidate): number | undefined {
  const near = c.similarRated;
  if (!near || near.weight <= 0) return c.rewardModelProbability;
  const prior = c.rewardModelProbability ?? 0.5;
  const fromPeople = clamp01((1 + near.reward) / 2);
  return (near.weight * fromPeople + MODEL_PRIOR_WEIGHT * prior) / (near.weight + MODEL_PRIOR_WEIGHT);
}

/** 1 at p = 0.5, 0 at p = 0 or 1: the reward model (or similar rated answers) cannot tell. */
function uncertaintyOf(c: RatingCandidate): number {
  const p = expectedGood(c);
  const fromModel = p === undefined ? 0 : 1 - Math.abs(2 * p - 1);
  // A calibrated sd of 0.5 on [-1, 1] is about as uncertain as an item gets with a rating or two.
  const fromPosterior = c.calibratedSd === undefined ? 0 : clamp01(c.calibratedSd / 0.5);
  // Nobody rated it and nothing scored it: as uncertain as it gets.
  if (!c.humanRated && p === undefined) return 1;
  return Math.max(fromModel, fromPosterior);
}

/** A rating adds a liked answer only where none is known yet: unrated answers, by their chance of being liked. */
function positiveOf(c: RatingCandidate): number {
  return c.humanRated ? 0 : (expectedGood(c) ?? 0.5);
}

function disagreementOf(c: RatingCandidate): number {
  return Math.max(clamp01((c.raterSpread ?? 0) / 1), clamp01((c.judgeHumanGap ?? 0) / 1));
}

function describe(p: Omit<RatingPick, 'reason'>, c: RatingCandidate): string {
  const parts: string[] = [];
  if (p.positive >= 0.6)
    parts.push(
      c.similarRated && c.similarRated.weight > 0
        ? `likely liked (p=${p.positive.toFixed(2)}, like ${c.similarRated.weight.toFixed(1)} similar rated answers)`
        : `likely liked (p=${p.positive.toFixed(2)})`,
    );
  if (p.uncertainty >= 0.5)
    parts.push(
      c.rewardModelProbability !== undefined
        ? `reward model unsure (p=${c.rewardModelProbability.toFixed(2)})`
        : c.humanRated
          ? `calibrated reward uncertain (sd ${c.calibratedSd?.toFixed(2)})`
          : 'not rated or scored yet',
    );
  if (p.disagreement >= 0.3)
    parts.push(
      (c.judgeHumanGap ?? 0) >= (c.raterSpread ?? 0)
        ? `judge and people disagree (gap ${c.judgeHumanGap?.toFixed(2)})`
        : `raters disagree (spread ${c.raterSpread?.toFixed(2)})`,
    );
  if (p.novelty >= 0.7) parts.push('new kind of prompt');
  return parts.length > 0 ? parts.join('; ') : 'highest remaining score';
}

/**
 * Active learning: which interactions a rating would teach most, within a budget. Each
 * candidate's score weighs uncertainty (the reward model near 0.5, or a wide calibrated
 * interval), disagreement (among raters, or between the judge and people) and novelty (distance
 * of its prompt from prompts already rated); under the `positives` objective mostly the chance
 * that an unrated answer is liked. Picks are taken best first, skipping prompts nearly
 * identical to one already picked, so the budget is not spent on one question asked ten ways.
 */
export function selectForRating(
  candidates: readonly RatingCandidate[],
  options: ActiveLearningOptions,
): RatingPick[] {
  const o = parseInput(ActiveLearningOptions, options, 'activeLearning');
  if (o.budget === 0 || candidates.length === 0) return [];
  const hasher = new MinHasher(64);
  const signature = (text: string) => hasher.signature(shingles(text, 2));
  const rated = new SignatureIndex(o.ratedPrompts.map(signature));
  const signatures = candidates.map((c) => signature(c.prompt));
  const w: Weights = { ...defaultWeights[o.objective], ...o.weights };

  const scored = candidates.map((c, i) => {
    const nearest = rated.nearestSimilarity(signatures[i]!);
    const parts = {
      positive: positiveOf(c),
      uncertainty: uncertaintyOf(c),
      disagreement: disagreementOf(c),
      novelty: 1 - nearest,
    };
    const score =
      w.positive * parts.positive +
      w.uncertainty * parts.uncertainty +
      w.disagreement * parts.disagreement +
      w.novelty * parts.novelty;
    return { index: i, id: c.id, score, ...parts };
  });
  scored.sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1));

  const picks: RatingPick[] = [];
  const pickedSignatures: Uint32Array[] = [];
  for (const s of scored) {
    if (picks.length >= o.budget) break;
    const sig = signatures[s.index]!;
    if (pickedSignatures.some((p) => estimatedJaccard(sig, p) >= o.diversityThreshold)) continue;
    pickedSignatures.push(sig);
    const { index, ...pick } = s;
    picks.push({ ...pick, reason: describe(pick, candidates[index]!) });
  }
  return picks;
}

/**
 * Rated prompts (or answers) in LSH buckets, so the nearest ones are found among the few that
 * share a band instead of comparing with every rated one. Texts that share no band are less than
 * about 0.4 similar; they count as unrelated (similarity 0).
 */
class SignatureIndex {
  private readonly buckets = new Map<string, number[]>();
  private readonly bands: number;
  private readonly rows: number;

  constructor(private readonly signatures: Uint32Array[]) {
    ({ bands: this.bands, rows: this.rows } = lshBands(64, 0.5));
    signatures.forEach((sig, i) => {
      for (const key of this.keys(sig)) {
        const bucket = this.buckets.get(key);
        if (bucket) bucket.push(i);
        else this.buckets.set(key, [i]);
      }
    });
  }

  private keys(sig: Uint32Array): string[] {
    return Array.from(
      { length: this.bands },
      (_, b) => `${b}:${sig.subarray(b * this.rows, (b + 1) * this.rows).join(',')}`,
    );
  }

  nearestSimilarity(sig: Uint32Array): number {
    return this.neighbours(sig).reduce((best, n) => Math.max(best, n.similarity), 0);
  }

  /** The indexed signatures that share a band with this one, with their estimated similarity. */
  neighbours(sig: Uint32Array): { index: number; similarity: number }[] {
    const seen = new Set<number>();
    const out: { index: number; similarity: number }[] = [];
    for (const key of this.keys(sig))
      for (const i of this.buckets.get(key) ?? []) {
        if (seen.has(i)) continue;
        seen.add(i);
        out.push({ index: i, similarity: estimatedJaccard(sig, this.signatures[i]!) });
      }
    return out;
  }
}

/** An answer people rated, with its calibrated reward on [-1, 1]. */
export interface RatedAnswer {
  id: string;
  text: string;
  reward: number;
}

/** Below this estimated Jaccard similarity of their texts, a rated answer says nothing about another. */
const MIN_ANSWER_SIMILARITY = 0.4;

/**
 * What people said about answers like each target: the mean calibrated reward of rated answers
 * whose text is similar (word-pair MinHash, LSH), each weighted by similarity^4 so that
 * near-copies dominate and loosely related answers barely count; `weight` is the sum of those
 * weights (about the number of near-copies). A non-parametric reward model from people's ratings
 * alone: it needs no training, so it is current after every batch of ratings. Targets with no
 * similar rated answer are left out; a rated answer is never its own neighbour.
 */
export function similarRatedRewards(
  targets: readonly { id: string; text: string }[],
  rated: readonly RatedAnswer[],
): Map<string, { reward: number; weight: number }> {
  const hasher = new MinHasher(64, 7);
  const signature = (text: string) => hasher.signature(shingles(text, 2));
  const index = new SignatureIndex(rated.map((r) => signature(r.text)));
  const out = new Map<string, { reward: number; weight: number }>();
  for (const t of targets) {
    let sum = 0;
    let weight = 0;
    for (const n of index.neighbours(signature(t.text))) {
      const r = rated[n.index]!;
      if (r.id === t.id || n.similarity < MIN_ANSWER_SIMILARITY) continue;
      const w = n.similarity ** 4;
      sum += w * r.reward;
      weight += w;
    }
    if (weight > 0) out.set(t.id, { reward: sum / weight, weight });
  }
  return out;
}
