import type { CandidateExample } from '../datasets/types.js';
import { correctionMessage, type PairwiseCandidate, type PairwiseComparison } from '../normalize/pairwise.js';
import type { ChatMessage } from '../schemas/interaction.js';
import { messageText } from './messages.js';
import { type CurationConfig, type CurationFilter, type CurationRow, curate } from './pipeline.js';
import type { SafetyClassifier } from './safety.js';

/**
 * What a decision is about: an interaction (its prompt and answer), or a feedback event whose
 * text or evidence would train (a correction, a preference, a ranking).
 */
export type CurationSubject = 'interaction' | 'feedback';

export interface DatasetCurationDecision {
  /** The interaction's id, or the feedback event's. */
  id: string;
  subject: CurationSubject;
  filter: CurationFilter | 'flagged_rater';
  action: 'dropped' | 'changed';
  reason: string;
}

/**
 * Leaves out every comparison (correction, preference, ranking) from a rater the calibration
 * flagged, with one decision per feedback event.
 *
 * Excluded, not down-weighted, even when calibration only down-weights a flagged rater's ratings:
 * a rating moves a calibrated mean by its weight, but a correction is the rater's own text and
 * becomes a whole SFT target, KTO example or DPO `chosen` (those rows carry no weight), and a
 * preference becomes a whole DPO pair. A weight would not bound what a flagged rater puts in the
 * data; leaving their evidence out does. Raters without a flag (including those never calibrated,
 * who sent no ratings) keep their evidence.
 */
export function excludeFlaggedRaters(
  comparisons: readonly PairwiseComparison[],
  flaggedRaters: ReadonlyMap<string, string | null>,
): { trusted: PairwiseComparison[]; decisions: DatasetCurationDecision[] } {
  if (flaggedRaters.size === 0) return { trusted: [...comparisons], decisions: [] };
  const trusted: PairwiseComparison[] = [];
  const decisions: DatasetCurationDecision[] = [];
  const excluded = new Set<string>();
  for (const c of comparisons) {
    if (!flaggedRaters.has(c.raterId)) {
      trusted.push(c);
      continue;
    }
    // A ranking yields many comparisons from one event: one decision for the event.
    if (excluded.has(c.feedbackId)) continue;
    excluded.add(c.feedbackId);
    const why = flaggedRaters.get(c.raterId);
    decisions.push({
      id: c.feedbackId,
      subject: 'feedback',
      filter: 'flagged_rater',
      action: 'dropped',
      reason: `${c.source} from flagged rater ${c.raterId}${why ? `: ${why}` : ''}`,
    });
  }
  return { trusted, decisions };
}

/**
 * What curation off does (it reads no text, so the candidates need not be at hand): flagged
 * raters' comparisons out, with their decisions and counts as curateDatasetInputs gives them.
 */
export function withoutFlaggedRaters(
  comparisons: readonly PairwiseComparison[],
  flaggedRaters: ReadonlyMap<string, string | null>,
): Omit<CuratedDatasetInputs<never>, 'candidates'> {
  const { trusted, decisions } = excludeFlaggedRaters(comparisons, flaggedRaters);
  const counts = { interactions: {} as Record<string, number>, feedback: {} as Record<string, number> };
  for (const d of decisions) {
    const by = d.subject === 'interaction' ? counts.interactions : counts.feedback;
    by[d.filter] = (by[d.filter] ?? 0) + 1;
  }
  return { comparisons: trusted, decisions, counts };
}

const promptText = (messages: readonly ChatMessage[]) => messages.map(messageText).join('\n');

// Row ids name their subject: an interaction and a feedback event may share a client-chosen id,
// and a duplicate's reason then says which one it repeats.
const interactionKey = (id: string) => `interaction:${id}`;
const feedbackKey = (id: string) => `feedback:${id}`;

export interface CuratedDatasetInputs<C extends CandidateExample<unknown, unknown>> {
  /** The interactions kept, PII redacted in every message. */
  candidates: C[];
  /**
   * The comparisons kept: none from flagged raters, none with a dropped or uncurated correction,
   * and corrections' text and message redacted.
   */
  comparisons: PairwiseComparison[];
  /** Every drop and change, of interactions and of feedback events, with filter and reason. */
  decisions: DatasetCurationDecision[];
  /** Dropped or changed, by filter: interactions and feedback events apart. */
  counts: { interactions: Record<string, number>; feedback: Record<string, number> };
}

/**
 * Curates everything a dataset build can turn into rows, in one `curate` run: the interactions
 * (the content filters spare rated-bad answers, kept as negatives) and the text of every
 * correction about them (a correction is an example to imitate, so every filter applies, with the
 * original answer's prompt). A correction's text and its full message are both redacted. Flagged
 * raters' evidence is left out first, whether or not curation is on (`config` false).
 */
export async function curateDatasetInputs<C extends CandidateExample>(
  candidates: readonly C[],
  comparisons: readonly PairwiseComparison[],
  config: CurationConfig | false,
  options: { flaggedRaters?: ReadonlyMap<string, string | null>; classifier?: SafetyClassifier } = {},
): Promise<CuratedDatasetInputs<C>> {
  const {
    comparisons: trusted,
    decisions,
    counts,
  } = withoutFlaggedRaters(comparisons, options.flaggedRaters ?? new Map());
  if (config === false) return { candidates: [...candidates], comparisons: trusted, decisions, counts };
  const count = (d: DatasetCurationDecision) => {
    const by = d.subject === 'interaction' ? counts.interactions : counts.feedback;
    by[d.filter] = (by[d.filter] ?? 0) + 1;
  };

  const rows: CurationRow[] = candidates.map((c) => ({
    id: interactionKey(c.interactionId),
    prompt: promptText(c.prompt),
    completion: messageText(c.completion),
    negative: c.reward !== null && c.reward < 0,
    messages: [...c.prompt, c.completion],
  }));
  const corrections = correctionRows(candidates, trusted, rows);
  const { kept, decisions: made } = await curate([...rows, ...corrections], config, options.classifier);
  for (const d of made) {
    const subject: CurationSubject = d.id.startsWith('interaction:') ? 'interaction' : 'feedback';
    const { filter, action, reason } = d;
    const decision = { id: d.id.slice(subject.length + 1), subject, filter, action, reason };
    decisions.push(decision);
    count(decision);
  }

  // `curate` keeps rows in their order (a changed row is a new object with the same id): walk the
  // candidates beside the kept rows instead of indexing a million of them.
  const keptCandidates: C[] = [];
  let k = 0;
  candidates.forEach((c, i) => {
    const after = kept[k];
    if (after?.id !== rows[i]!.id) return;
    k++;
    if (after === rows[i]) keptCandidates.push(c);
    else {
      const messages = after.messages!;
      keptCandidates.push({ ...c, prompt: messages.slice(0, -1), completion: messages.at(-1)! });
    }
  });
  const keptCorrections = new Map(kept.slice(k).map((r) => [r.id, r]));
  return {
    candidates: keptCandidates,
    comparisons: curatedComparisons(trusted, keptCorrections),
    decisions,
    counts,
  };
}

/**
 * One row per correction about a candidate: the original's prompt, the text the builders would
 * write (the full message when the rater sent one), and both the text and the message to redact.
 */
function correctionRows(
  candidates: readonly CandidateExample[],
  comparisons: readonly PairwiseComparison[],
  candidateRows: readonly CurationRow[],
): CurationRow[] {
  // Indexing a million candidates costs more than the rest of a build: only with corrections.
  if (!comparisons.some((c) => c.winner.type === 'correction' || c.loser.type === 'correction')) return [];
  const promptOf = new Map(candidates.map((c, i) => [c.interactionId, candidateRows[i]!.prompt]));
  const out: CurationRow[] = [];
  const seen = new Set<string>();
  for (const c of comparisons)
    for (const side of [c.winner, c.loser]) {
      if (side.type !== 'correction' || seen.has(side.feedbackId)) continue;
      const prompt = promptOf.get(side.interactionId);
      // About an interaction the build does not use (another segment, dropped upstream): no row
      // can hold it, and curatedComparisons leaves it out.
      if (prompt === undefined) continue;
      seen.add(side.feedbackId);
      out.push({
        id: feedbackKey(side.feedbackId),
        prompt,
        completion: messageText(correctionMessage(side)),
        messages: [{ role: 'assistant', content: side.text }, ...(side.message ? [side.message] : [])],
        contrastOf: interactionKey(side.interactionId),
      });
    }
  return out;
}

/** The comparisons whose corrections were kept, with their redacted text and message. */
function curatedComparisons(
  comparisons: readonly PairwiseComparison[],
  keptRows: ReadonlyMap<string, CurationRow>,
): PairwiseComparison[] {
  const side = (s: PairwiseCandidate): PairwiseCandidate | null => {
    if (s.type !== 'correction') return s;
    const row = keptRows.get(feedbackKey(s.feedbackId));
    if (!row) return null;
    const [text, message] = row.messages!;
    return {
      ...s,
      text: typeof text!.content === 'string' ? text!.content : s.text,
      ...(message ? { message } : {}),
    };
  };
  const out: PairwiseComparison[] = [];
  for (const c of comparisons) {
    const winner = side(c.winner);
    const loser = side(c.loser);
    if (winner && loser) out.push(winner === c.winner && loser === c.loser ? c : { ...c, winner, loser });
  }
  return out;
}
