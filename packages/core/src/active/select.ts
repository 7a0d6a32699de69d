import { z } from 'zod';
import { estimatedJaccard, lshBands, MinHasher, shingles } from '../curation/near-duplicates.js';
import { parseInput } from '../errors.js';

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
}

export const ActiveLearningOptions = z.strictObject({
  /** How many to pick (the rating budget of this round). */
  budget: z.number().int().min(0).max(100_000),
  /** Weights of the signals in the score. */
  weights: z
    .strictObject({
      uncertainty: z.number().min(0).default(1),
      disagreement: z.number().min(0).default(0.7),
      novelty: z.number().min(0).default(0.5),
    })
    .default({ uncertainty: 1, disagreement: 0.7, novelty: 0.5 }),
  /** Picks whose prompts are at least this similar (estimated Jaccard) to an earlier pick are skipped. */
  diversityThreshold: z.number().min(0).max(1).default(0.8),
  /** Prompts already well covered by ratings, for novelty. */
  ratedPrompts: z.array(z.string()).default([]),
});
export type ActiveLearningOptions = z.input<typeof ActiveLearningOptions>;

export interface RatingPick {
  id: string;
  score: number;
  uncertainty: number;
  disagreement: number;
  novelty: number;
  /** Why it was picked, for the annotator and the audit log. */
  reason: string;
}

const clamp01 = (x: number) => Math.max(0, Math.min(1, x));

/** 1 at p = 0.5, 0 at p = 0 or 1: the reward model cannot tell. */
function uncertaintyOf(c: RatingCandidate): number {
  const fromModel =
    c.rewardModelProbability === undefined ? 0 : 1 - Math.abs(2 * c.rewardModelProbability - 1);
  // A calibrated sd of 0.5 on [-1, 1] is about as uncertain as an item gets with a rating or two.
  const fromPosterior = c.calibratedSd === undefined ? 0 : clamp01(c.calibratedSd / 0.5);
  // Nobody rated it and no model scored it: as uncertain as it gets.
  if (!c.humanRated && c.rewardModelProbability === undefined) return 1;
  return Math.max(fromModel, fromPosterior);
}

function disagreementOf(c: RatingCandidate): number {
  return Math.max(clamp01((c.raterSpread ?? 0) / 1), clamp01((c.judgeHumanGap ?? 0) / 1));
}

function describe(p: Omit<RatingPick, 'reason'>, c: RatingCandidate): string {
  const parts: string[] = [];
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
 * of its prompt from prompts already rated). Picks are taken best first, skipping prompts nearly
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

  const scored = candidates.map((c, i) => {
    const nearest = rated.nearestSimilarity(signatures[i]!);
    const parts = { uncertainty: uncertaintyOf(c), disagreement: disagreementOf(c), novelty: 1 - nearest };
    const score =
      o.weights.uncertainty * parts.uncertainty +
      o.weights.disagreement * parts.disagreement +
      o.weights.novelty * parts.novelty;
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
 * Rated prompts in LSH buckets, so the nearest one is found among the few that share a band
 * instead of comparing with every rated prompt. Prompts that share no band are less than about
 * 0.4 similar; they count as unrelated (similarity 0).
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
    let best = 0;
    const seen = new Set<number>();
    for (const key of this.keys(sig))
      for (const i of this.buckets.get(key) ?? []) {
        if (seen.has(i)) continue;
        seen.add(i);
        best = Math.max(best, estimatedJaccard(sig, this.signatures[i]!));
      }
    return best;
  }
}
