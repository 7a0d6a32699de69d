/**
 * Precision, recall and F1 of binary predictions (e.g. the reward model's thumbs-up calls against
 * held-out thumbs). A ratio with a zero denominator is 0, as scikit-learn's default
 * (`zero_division="warn"`) returns.
 */

export interface BinaryClassificationMetrics {
  truePositives: number;
  falsePositives: number;
  falseNegatives: number;
  trueNegatives: number;
  precision: number;
  recall: number;
  f1: number;
  accuracy: number;
}

function ratio(numerator: number, denominator: number): number {
  return denominator === 0 ? 0 : numerator / denominator;
}

/** Metrics of `predicted` against `actual` (true is the positive class). */
export function binaryClassificationMetrics(
  predicted: readonly boolean[],
  actual: readonly boolean[],
): BinaryClassificationMetrics {
  if (predicted.length !== actual.length) {
    throw new Error(
      `binaryClassificationMetrics: ${predicted.length} predictions but ${actual.length} labels`,
    );
  }
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let tn = 0;
  predicted.forEach((p, i) => {
    const a = actual[i]!;
    if (p && a) tp++;
    else if (p) fp++;
    else if (a) fn++;
    else tn++;
  });
  const precision = ratio(tp, tp + fp);
  const recall = ratio(tp, tp + fn);
  return {
    truePositives: tp,
    falsePositives: fp,
    falseNegatives: fn,
    trueNegatives: tn,
    precision,
    recall,
    // scikit-learn's F1 is 2tp / (2tp + fp + fn): equal to the harmonic mean, and 0 when tp = 0.
    f1: ratio(2 * tp, 2 * tp + fp + fn),
    accuracy: ratio(tp + tn, predicted.length),
  };
}
