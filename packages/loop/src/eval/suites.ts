/**
 * Where evaluation items come from: a dataset version's held-out split (real prompts with the
 * ratings people gave the logged answers) and the built-in suites (red-team probes, adversarial
 * variants of held-out prompts).
 */
import {
  adversarialVariants,
  type ChatMessage,
  type EvaluationSuite,
  type Feedback,
  RatchetError,
  redTeamSuite,
  type SafetyProbe,
} from '@ratchet/core';
import type { Store } from '@ratchet/store';

export interface HeldOutItem {
  interactionId: string;
  /** The conversation up to the answer. */
  messages: ChatMessage[];
  /** The answer that was logged and rated. */
  loggedOutput: string;
  segments: string[];
  /** A rater's correction, else the logged answer when it was top-rated. */
  reference: string | null;
  referenceKind: 'correction' | 'top_rated' | null;
  /** Majority of the current thumbs, when there are any. */
  thumbsUp: boolean | null;
  /** Rated positively (thumbs up or top stars): used for perplexity. */
  positive: boolean;
}

export interface SuiteItem {
  suite: EvaluationSuite;
  itemId: string;
  category: string | null;
  messages: ChatMessage[];
  segments: string[];
  probe: SafetyProbe | null;
  heldOut: HeldOutItem | null;
}

const text = (m: ChatMessage | undefined) =>
  typeof m?.content === 'string' ? m.content : JSON.stringify(m?.content ?? '');

function segmentsOf(
  tags: readonly string[],
  metadata: Record<string, unknown>,
  segmentBy: readonly string[],
): string[] {
  const out: string[] = [];
  for (const by of segmentBy) {
    if (by === 'tags') out.push(...tags.map((t) => (t.includes(':') ? t : `tag:${t}`)));
    else if (by.startsWith('metadata.')) {
      const key = by.slice('metadata.'.length);
      const v = metadata[key];
      if (v !== undefined && v !== null && typeof v !== 'object') out.push(`${key}:${String(v)}`);
    }
  }
  return [...new Set(out)];
}

function ratingsOf(feedback: readonly Feedback[]) {
  const current = feedback.filter((f) => f.current);
  const thumbs = current.filter((f) => f.kind === 'thumbs' && f.value !== null);
  const thumbsMean = thumbs.length ? thumbs.reduce((s, f) => s + f.value!, 0) / thumbs.length : null;
  const stars = current.filter((f) => f.kind === 'stars' && f.label === 'stars' && f.value !== null);
  const starsMean = stars.length ? stars.reduce((s, f) => s + f.value!, 0) / stars.length : null;
  const correction = current.filter((f) => f.kind === 'correction' && f.text).at(-1)?.text ?? null;
  return {
    thumbsUp: thumbsMean === null || thumbsMean === 0 ? null : thumbsMean > 0,
    topRated: (thumbsMean !== null && thumbsMean > 0) || (starsMean !== null && starsMean >= 4),
    correction,
  };
}

/** The held-out split of a dataset version (by id, name or name@version), with its ratings. */
export async function loadHeldOut(
  store: Store,
  projectId: string,
  datasetRef: string,
  options: { maxItems: number; segmentBy: readonly string[] },
): Promise<{ datasetId: string; items: HeldOutItem[] }> {
  const dataset = await store.datasets.get(projectId, datasetRef);
  if (!dataset) throw new RatchetError('not_found', `dataset: "${datasetRef}" not found`, 'dataset');
  const ids = await store.evaluations.heldOutInteractionIds(projectId, dataset.id, options.maxItems);
  const interactions = await store.interactions.getMany(projectId, ids);
  const feedback = await store.feedback.listForInteractions(projectId, ids);
  const items = interactions
    .filter((i) => i.messages.length > 0)
    .map((i): HeldOutItem => {
      const r = ratingsOf(feedback.get(i.id) ?? []);
      const logged = text(i.output);
      const reference = r.correction ?? (r.topRated && logged ? logged : null);
      return {
        interactionId: i.id,
        messages: i.messages,
        loggedOutput: logged,
        segments: segmentsOf(i.tags, i.metadata, options.segmentBy),
        reference,
        referenceKind: r.correction ? 'correction' : reference ? 'top_rated' : null,
        thumbsUp: r.thumbsUp,
        positive: r.topRated && logged.length > 0,
      };
    })
    .sort((a, b) => (a.interactionId < b.interactionId ? -1 : 1));
  return { datasetId: dataset.id, items };
}

/** Every item of the requested suites, in a fixed order (held-out, red-team, adversarial). */
export function assembleSuites(
  suites: readonly EvaluationSuite[],
  heldOut: readonly HeldOutItem[],
  adversarialItems: number,
): SuiteItem[] {
  const out: SuiteItem[] = [];
  if (suites.includes('heldout')) {
    for (const h of heldOut) {
      out.push({
        suite: 'heldout',
        itemId: h.interactionId,
        category: null,
        messages: h.messages,
        segments: ['suite:heldout', ...h.segments],
        probe: null,
        heldOut: h,
      });
    }
  }
  if (suites.includes('redteam')) {
    for (const p of redTeamSuite()) {
      out.push({
        suite: 'redteam',
        itemId: p.id,
        category: p.category,
        messages: p.messages,
        segments: ['suite:redteam', `category:${p.category}`],
        probe: p,
        heldOut: null,
      });
    }
  }
  if (suites.includes('adversarial')) {
    for (const h of heldOut.slice(0, adversarialItems)) {
      for (const p of adversarialVariants(h.interactionId, h.messages)) {
        out.push({
          suite: 'adversarial',
          itemId: p.id,
          category: p.category,
          messages: p.messages,
          segments: ['suite:adversarial', `category:${p.category}`, ...h.segments],
          probe: p,
          heldOut: null,
        });
      }
    }
  }
  return out;
}
