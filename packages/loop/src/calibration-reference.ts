import {
  CalibrationOptions,
  type CalibrationOptionsInput,
  calibrateRatingColumns,
  type Interaction,
} from '@ratchet/core';
import type { RaterCalibrationRow, Store } from '@ratchet/store';
import { fitWordModel } from './ai-feedback/words.js';
import { contentText } from './content-text.js';
import { GrowableColumns, IdIndex } from './growable.js';

/**
 * What else may rate every rated answer in a calibration: `none`, or `words` (a word model of
 * what the other raters liked). The one list of them: the loop policy reads it.
 */
export const calibrationReferences = ['none', 'words'] as const;
export type CalibrationReference = (typeof calibrationReferences)[number];

/** Raters are split into this many folds; an answer's reference comes from a model fitted without its rater's fold. */
const FOLDS = 5;

/** What the word model reads of an answer: the question it answers and the answer. */
function answerText(i: Interaction): string {
  const asked = [...i.messages].reverse().find((m) => m.role === 'user');
  return `${asked ? contentText(asked.content) : ''}\n${contentText(i.output.content)}`;
}

/** A rater's fold, fixed by their id (FNV-1a), so a rater's answers are held out together in every run. */
function foldOf(raterId: string): number {
  let h = 0x811c9dc5;
  for (let k = 0; k < raterId.length; k++) {
    h ^= raterId.charCodeAt(k);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % FOLDS;
}

/** A person the reference screen flagged: their calibration row, from the screening fit. */
export type ReferenceFlag = RaterCalibrationRow & { flagged: true; reason: string };

/**
 * Judges raters against a word model of what the other raters liked, for projects where nearly
 * every answer has a single rating: nobody else informs those answers, so the calibration cannot
 * tell a rater who rates the opposite of what they think from an honest one.
 *
 * Each rated answer gets one more rating, 2 P(liked) - 1 by a word model (logistic regression on
 * the words of the question and the answer, `fitWordModel`) fitted on the ratings of the other
 * raters' folds, never on the answer's first rater's (five folds by rater id). A screening fit of
 * people's ratings with these (core's full fit, the consensus-correlation rule only: against a
 * smooth model the noise and constant rules would judge the model, not the person) flags the
 * raters whose ratings are significantly anti-correlated with it. The screen judges raters only:
 * the reference would outweigh people on their own answers (it is never noisy), so the caller
 * fits the rewards without it and without the flagged raters. Reads every rated answer's text:
 * for projects of thousands to a few hundred thousand ratings.
 */
export async function screenWithWordReference(
  store: Store,
  projectId: string,
  read: { items: IdIndex; raters: IdIndex; columns: GrowableColumns },
  calibration: CalibrationOptionsInput | undefined,
): Promise<{ flagged: ReferenceFlag[]; referenceRatings: number }> {
  const { items, raters } = read;
  const people = read.columns.trimmed();
  const texts: (string | undefined)[] = new Array(items.ids.length);
  for (let k = 0; k < items.ids.length; k += 1000) {
    for (const i of await store.interactions.getMany(projectId, items.ids.slice(k, k + 1000)))
      texts[items.find(i.id)!] = answerText(i);
  }
  const raterFold = raters.ids.map(foldOf);
  // An answer is held out from the fold of its first rater (nearly always its only one).
  const itemFold = new Int8Array(items.ids.length).fill(-1);
  const examples: { text: string; up: boolean; fold: number }[] = [];
  for (let k = 0; k < people.item.length; k++) {
    const item = people.item[k]!;
    const fold = raterFold[people.rater[k]!]!;
    if (itemFold[item] === -1) itemFold[item] = fold;
    const text = texts[item];
    // A neutral rating says neither liked nor disliked: no example.
    if (text !== undefined && people.value[k] !== 0) examples.push({ text, up: people.value[k]! > 0, fold });
  }
  const models = Array.from({ length: FOLDS }, (_, f) =>
    fitWordModel(
      examples.filter((e) => e.fold !== f),
      // 100 full-batch steps flag as many as 300 on the demo's ratings (43 and 44 of 57
      // adversaries, no one honest) in a third of the time: this runs before every canary look.
      { l2: 1, iterations: 100 },
    ),
  );
  const columns = new GrowableColumns();
  for (let k = 0; k < people.item.length; k++)
    columns.push(
      people.item[k]!,
      people.rater[k]!,
      people.value[k]!,
      people.weight[k]!,
      people.isThumbs[k] === 1,
    );
  const reference = raters.ids.length;
  let referenceRatings = 0;
  for (let item = 0; item < items.ids.length; item++) {
    const text = texts[item];
    if (text === undefined || itemFold[item] === -1) continue;
    columns.push(item, reference, Math.tanh(models[itemFold[item]!]!(text) / 2), 1, false);
    referenceRatings++;
  }
  const options = CalibrationOptions.parse(calibration ?? {});
  const screened = calibrateRatingColumns(
    { ...columns.trimmed(), itemCount: items.ids.length, raterCount: raters.ids.length + 1 },
    {
      ...options,
      flagging: { ...options.flagging, enabled: true, maxNoiseRatio: 1e6, constantMinConsensusSd: 1e6 },
    },
  ).raters;
  const flagged: ReferenceFlag[] = [];
  for (let r = 0; r < raters.ids.length; r++) {
    if (screened.flagged[r] !== 1) continue;
    flagged.push({
      raterId: raters.ids[r]!,
      bias: screened.bias[r]!,
      scale: screened.scale[r]!,
      noiseSd: screened.noiseSd[r]!,
      reliability: screened.reliability[r]!,
      consensusCorrelation: Number.isFinite(screened.consensusCorrelation[r]!)
        ? screened.consensusCorrelation[r]!
        : null,
      influence: 0,
      flagged: true,
      reason: `against a word model of what the other raters liked: ${screened.flagReason[r]}`,
    });
  }
  return { flagged, referenceRatings };
}

/** The ratings without those of `drop` (rater ids), with items and raters numbered afresh. */
export function withoutRaters(
  read: { items: IdIndex; raters: IdIndex; columns: GrowableColumns },
  drop: ReadonlySet<string>,
): { items: IdIndex; raters: IdIndex; columns: GrowableColumns } {
  if (drop.size === 0) return read;
  const out = { items: new IdIndex(), raters: new IdIndex(), columns: new GrowableColumns() };
  const c = read.columns.trimmed();
  for (let k = 0; k < c.item.length; k++) {
    const raterId = read.raters.ids[c.rater[k]!]!;
    if (drop.has(raterId)) continue;
    out.columns.push(
      out.items.of(read.items.ids[c.item[k]!]!),
      out.raters.of(raterId),
      c.value[k]!,
      c.weight[k]!,
      c.isThumbs[k] === 1,
    );
  }
  return out;
}
