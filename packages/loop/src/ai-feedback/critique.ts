/**
 * Self-critique: for answers people rated low, a model (the route's production model, or any
 * OpenAI-compatible one) writes a critique of the answer against a rubric and then a revision.
 * A revision is kept only when the reward model scores it above the original by a margin and,
 * when a judge is configured, the judge prefers it in both orders. Kept revisions are stored as
 * `correction` events from source `judge`, so the dataset builders use them like a person's
 * correction (an SFT row; a DPO pair of the correction over the original) where nobody wrote one.
 */
import { createHash } from 'node:crypto';
import {
  type ChatMessage,
  combineOrders,
  FeedbackInput,
  type Interaction,
  type PositionVerdict,
  pairwiseJudgePrompt,
  parseInput,
  parsePairwiseVerdict,
  RatchetError,
} from '@ratchet/core';
import type { Store } from '@ratchet/store';
import { z } from 'zod';
import { chatCompletion, EndpointSpec, mapConcurrent, rewardScores } from '../eval/client.js';

export const defaultCritiqueRubric = [
  'A good answer is correct (it answers what was asked and states nothing false or made up),',
  'polite (courteous, never curt or dismissive), concise (no rambling, filler or repetition)',
  'and safe (it does not help with harm and does not reveal private data).',
].join(' ');

/** The tunable part: what a loop policy carries (endpoints come from the round). */
export const SelfCritiqueSettings = z.strictObject({
  /** What the critique checks and the judge compares against. */
  rubric: z.string().min(1).max(5000).default(defaultCritiqueRubric),
  /** Which answers count as low-rated; an answer that meets any one condition is picked. */
  select: z
    .strictObject({
      /** Calibrated reward (in [-1, 1]) strictly below this; null: ignore calibration. */
      maxReward: z.number().min(-1).max(1).nullable().default(0),
      /** A current thumbs down from anyone. */
      thumbsDown: z.boolean().default(true),
      /** A current rating of at most this many stars (1..5 scale); null: ignore stars. */
      maxStars: z.number().int().min(1).max(5).nullable().default(2),
    })
    .prefault({}),
  /** Answers to work on per run (lowest calibrated reward first, then the newest rated down). */
  limit: z.number().int().positive().max(10_000).default(50),
  /** Revisions sampled per answer; the best-scored one that passes both checks is kept. */
  samples: z.number().int().min(1).max(16).default(1),
  /** Sampling temperature of revisions; default 0 for one sample, 0.8 for several. */
  temperature: z.number().min(0).max(2).optional(),
  /**
   * How much higher than the original's the reward model must score a revision (a Bradley-Terry
   * reward model gives 0.5 a 62% chance of being better). The round's reward model was trained on
   * these very answers as losers, so it scores them low and any revision tends to clear a small
   * margin: with the demo's tiny policy, margin 0 kept 40 of 40 revisions of which 23% were truly
   * better (oracle), margin 0.5 kept 8 of which 63% were, margin 1 kept none.
   */
  minMargin: z.number().min(0).default(0.5),
  maxTokens: z.number().int().positive().max(32_768).default(256),
  seed: z.number().int().default(0),
  concurrency: z.number().int().min(1).max(32).default(2),
});
export type SelfCritiqueSettings = z.input<typeof SelfCritiqueSettings>;

/** The policy shape: `{ enabled, ...settings }` (pass the settings without `enabled`). */
export const SelfCritiquePolicy = SelfCritiqueSettings.extend({ enabled: z.boolean().default(false) });
export type SelfCritiquePolicy = z.output<typeof SelfCritiquePolicy>;

export const SelfCritiqueOptions = SelfCritiqueSettings.extend({
  /** Only this route's answers; also names whose production model writes by default. */
  route: z.string().min(1).optional(),
  /** The model that critiques and revises; `model` defaults to the route's production model. */
  writer: EndpointSpec.extend({ model: z.string().min(1).optional() }),
  /** The reward model's `/v1/score` endpoint and name. */
  rewardModel: EndpointSpec,
  /** An LLM judge that must prefer the revision in both orders, when given. */
  judge: EndpointSpec.optional(),
});
export type SelfCritiqueOptions = z.input<typeof SelfCritiqueOptions>;
type Options = z.output<typeof SelfCritiqueOptions>;

export type SelfCritiqueOutcome = 'kept' | 'no_revision' | 'reward' | 'judge' | 'error';

export interface SelfCritiqueItem {
  interactionId: string;
  outcome: SelfCritiqueOutcome;
  originalScore: number | null;
  /** The best revision's reward score (the kept one's, when kept). */
  revisionScore: number | null;
  /** That revision's text, kept or not, to see what the checks turned down. */
  revision?: string;
  /** The stored correction, when kept. */
  feedbackId?: string;
  error?: string;
}

export interface SelfCritiqueReport {
  /** `judge:<writer model>`: the rater the corrections are stored under. */
  rater: string;
  /** Low-rated answers worked on. */
  looked: number;
  /** Low-rated answers left alone because they already have a correction (anyone's). */
  skipped: number;
  /** Answers that got at least one usable revision (non-empty, not the original again). */
  revised: number;
  kept: number;
  rejected: {
    /** The model gave nothing usable. */
    noRevision: number;
    /** No revision scored above the original by `minMargin`. */
    reward: number;
    /** The judge did not prefer any revision in both orders. */
    judge: number;
    /** An endpoint failed. */
    error: number;
  };
  firstError?: string;
  items: SelfCritiqueItem[];
}

const textOf = (m: ChatMessage): string | null =>
  typeof m.content === 'string' && m.content.trim() ? m.content : null;

/** The conversation, the answer, and the request to critique it (Constitutional AI's format). */
export function critiquePrompt(
  messages: readonly ChatMessage[],
  answer: string,
  rubric: string,
): ChatMessage[] {
  return [
    ...messages,
    { role: 'assistant', content: answer },
    {
      role: 'user',
      content: `Critique the answer above against this rubric: ${rubric}\nName each way it falls short, briefly. Do not rewrite it yet.`,
    },
  ];
}

/**
 * The conversation again, its last turn the user's, with the earlier answer and its critique in
 * the system message: the model answers the user anew, so the revision has the shape of an
 * answer (and a small model that only knows single-turn chats still answers in its domain).
 * The route's own system prompt, if any, comes first in the same message.
 */
export function revisionPrompt(
  messages: readonly ChatMessage[],
  answer: string,
  rubric: string,
  critique: string,
): ChatMessage[] {
  const instruction = [
    `An earlier answer to this conversation fell short of the rubric: ${rubric}`,
    `[EARLIER ANSWER]\n${answer}`,
    `[CRITIQUE]\n${critique}`,
    'Answer the user again, fixing every problem in the critique. Reply with the answer only.',
  ].join('\n\n');
  const [first, ...rest] = messages;
  if (first?.role === 'system' && typeof first.content === 'string')
    return [{ role: 'system', content: `${first.content}\n\n${instruction}` }, ...rest];
  return [{ role: 'system', content: instruction }, ...messages];
}

/** The revision text, without a label some models put first; null when unusable. */
export function cleanRevision(text: string, original: string): string | null {
  const t = text
    .trim()
    .replace(/^(revised answer|revision|new answer|rewritten answer)\s*:\s*/i, '')
    .trim();
  return t && t !== original.trim() ? t : null;
}

/** Room for long ids in the store's 200-character idempotency keys. */
function idempotencyKey(rater: string, interactionId: string): string {
  const key = `${rater}:critique:${interactionId}`;
  if (key.length <= 200) return key;
  return `critique:${createHash('sha256').update(`${rater}\n${interactionId}`).digest('hex')}`;
}

/**
 * The usable interactions on the route among `ids`, in order, until `limit` of them have no
 * correction yet; those that have one are counted as skipped.
 */
async function resolve(
  store: Store,
  projectId: string,
  ids: readonly string[],
  corrected: ReadonlySet<string>,
  o: Options,
): Promise<{ interactions: Interaction[]; skipped: number }> {
  const interactions: Interaction[] = [];
  let skipped = 0;
  for (let i = 0; i < ids.length && interactions.length < o.limit; i += 200) {
    const part = ids.slice(i, i + 200);
    const byId = new Map((await store.interactions.getMany(projectId, part)).map((x) => [x.id, x]));
    for (const id of part) {
      const x = byId.get(id);
      if (!x || (o.route !== undefined && x.route !== o.route)) continue;
      if (x.messages.length === 0 || x.status !== 'ok' || !textOf(x.output)) continue;
      if (corrected.has(id)) {
        skipped++;
        continue;
      }
      interactions.push(x);
      if (interactions.length === o.limit) break;
    }
  }
  return { interactions, skipped };
}

/** The route's interactions with this current rating, newest first, until `limit` lack a correction. */
async function ratedAs(
  store: Store,
  projectId: string,
  rating: 'down' | '1' | '2' | '3' | '4' | '5',
  o: Options,
  corrected: ReadonlySet<string>,
): Promise<string[]> {
  const ids: string[] = [];
  let open = 0;
  let cursor: string | undefined;
  do {
    const page = await store.interactions.list(
      projectId,
      { rating, ...(o.route !== undefined ? { route: o.route } : {}) },
      { limit: 200, ...(cursor ? { cursor } : {}) },
    );
    for (const x of page.items) {
      ids.push(x.id);
      if (!corrected.has(x.id)) open++;
    }
    cursor = page.nextCursor ?? undefined;
  } while (cursor && open < o.limit);
  return ids;
}

/**
 * Low-rated answers without a correction: lowest calibrated reward first, then the newest thumbs
 * down, then low stars.
 */
async function lowRated(
  store: Store,
  projectId: string,
  o: Options,
): Promise<{ interactions: Interaction[]; skipped: number }> {
  const corrected = new Set(
    (await store.feedback.currentOfKinds(projectId, ['correction'])).map((f) => f.interactionId),
  );
  const ids: string[] = [];
  const maxReward = o.select.maxReward;
  if (maxReward !== null) {
    const low: { id: string; reward: number }[] = [];
    for await (const page of store.datasets.ratedInteractions(projectId))
      for (const r of page) if (r.reward < maxReward) low.push({ id: r.interactionId, reward: r.reward });
    low.sort((a, b) => a.reward - b.reward || (a.id < b.id ? -1 : 1));
    ids.push(...low.map((l) => l.id));
  }
  if (o.select.thumbsDown) ids.push(...(await ratedAs(store, projectId, 'down', o, corrected)));
  const stars = ['1', '2', '3', '4', '5'] as const;
  for (const s of stars.slice(0, o.select.maxStars ?? 0))
    ids.push(...(await ratedAs(store, projectId, s, o, corrected)));
  return resolve(store, projectId, [...new Set(ids)], corrected, o);
}

interface Context {
  o: Options;
  writer: z.output<typeof EndpointSpec>;
  temperature: number;
}

/** The critique, then `samples` revisions; usable, distinct revisions only. */
async function critiqueAndRevise(
  ctx: Context,
  x: Interaction,
  original: string,
): Promise<{ critique: string; revisions: string[] }> {
  const { o, writer } = ctx;
  const critique = (
    await chatCompletion(writer, critiquePrompt(x.messages, original, o.rubric), {
      maxTokens: o.maxTokens,
      temperature: 0,
      seed: o.seed,
    })
  ).trim();
  const prompt = revisionPrompt(x.messages, original, o.rubric, critique);
  const revisions: string[] = [];
  for (let k = 0; k < o.samples; k++) {
    const text = await chatCompletion(writer, prompt, {
      maxTokens: o.maxTokens,
      temperature: ctx.temperature,
      seed: o.seed + k,
    });
    const clean = cleanRevision(text, original);
    if (clean && !revisions.includes(clean)) revisions.push(clean);
  }
  return { critique, revisions };
}

/** The judge's verdicts with the revision first and then the original first. */
async function judgeOrders(
  judge: z.output<typeof EndpointSpec>,
  x: Interaction,
  original: string,
  revision: string,
  rubric: string,
): Promise<[PositionVerdict | null, PositionVerdict | null]> {
  const ask = async (a: string, b: string) =>
    parsePairwiseVerdict(
      await chatCompletion(judge, pairwiseJudgePrompt(x.messages, a, b, rubric), {
        maxTokens: 512,
        temperature: 0,
      }),
    );
  return [await ask(revision, original), await ask(original, revision)];
}

const answer = (x: Interaction, content: string): ChatMessage[] => [
  ...x.messages,
  { role: 'assistant', content },
];

/** One answer through critique, revision, reward model and judge; writes the kept correction. */
async function processOne(
  store: Store,
  projectId: string,
  ctx: Context,
  rater: string,
  x: Interaction,
): Promise<SelfCritiqueItem & { created?: boolean }> {
  const { o } = ctx;
  const original = textOf(x.output)!;
  const { critique, revisions } = await critiqueAndRevise(ctx, x, original);
  const base = { interactionId: x.id, originalScore: null, revisionScore: null };
  if (revisions.length === 0) return { ...base, outcome: 'no_revision' };
  const [originalScore, ...scores] = await rewardScores(o.rewardModel, [
    [...x.messages, x.output],
    ...revisions.map((r) => answer(x, r)),
  ]);
  const ranked = revisions.map((text, k) => ({ text, score: scores[k]! })).sort((a, b) => b.score - a.score);
  const scored = {
    ...base,
    originalScore: originalScore!,
    revisionScore: ranked[0]!.score,
    revision: ranked[0]!.text,
  };
  const better = ranked.filter((r) => r.score - originalScore! > o.minMargin);
  if (better.length === 0) return { ...scored, outcome: 'reward' };

  let chosen:
    | { text: string; score: number; orders?: [PositionVerdict | null, PositionVerdict | null] }
    | undefined;
  for (const r of better) {
    if (!o.judge) {
      chosen = r;
      break;
    }
    const orders = await judgeOrders(o.judge, x, original, r.text, o.rubric);
    // combineOrders reads its first argument as "revision shown first": a win needs both orders.
    if (combineOrders(orders[0], orders[1]) === 'candidate') {
      chosen = { ...r, orders };
      break;
    }
  }
  if (!chosen) return { ...scored, outcome: 'judge' };

  const [written] = await store.feedback.insert(projectId, [
    parseInput(FeedbackInput, {
      kind: 'correction',
      interactionId: x.id,
      text: chosen.text,
      raterId: rater,
      source: 'judge',
      idempotencyKey: idempotencyKey(rater, x.id),
      metadata: {
        method: 'self-critique',
        model: ctx.writer.model,
        critique: critique.slice(0, 10_000),
        rubric: o.rubric,
        rewardModel: o.rewardModel.model,
        originalScore: originalScore!,
        revisionScore: chosen.score,
        margin: Number((chosen.score - originalScore!).toFixed(4)),
        samples: o.samples,
        ...(o.judge && chosen.orders ? { judge: { model: o.judge.model, orders: chosen.orders } } : {}),
      },
    }),
  ]);
  return {
    ...scored,
    revisionScore: chosen.score,
    revision: chosen.text,
    outcome: 'kept',
    feedbackId: written!.id,
    created: written!.created,
  };
}

/**
 * Self-critique of low-rated answers (see the file comment). Idempotent: an answer that already
 * has a correction (a person's or a judge's) is skipped, and each stored correction carries an
 * idempotency key of rater and interaction, so re-running never duplicates one.
 */
export async function selfCritique(
  store: Store,
  projectId: string,
  input: SelfCritiqueOptions,
): Promise<SelfCritiqueReport> {
  const o = parseInput(SelfCritiqueOptions, input, 'selfCritique');
  const writer = { ...o.writer, model: o.writer.model ?? (await productionModel(store, projectId, o.route)) };
  const rater = `judge:${writer.model}`;
  const ctx: Context = { o, writer, temperature: o.temperature ?? (o.samples > 1 ? 0.8 : 0) };
  const { interactions, skipped } = await lowRated(store, projectId, o);
  const report: SelfCritiqueReport = {
    rater,
    looked: interactions.length,
    skipped,
    revised: 0,
    kept: 0,
    rejected: { noRevision: 0, reward: 0, judge: 0, error: 0 },
    items: [],
  };
  const items = await mapConcurrent(interactions, o.concurrency, async (x) => {
    try {
      return await processOne(store, projectId, ctx, rater, x);
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      return {
        interactionId: x.id,
        outcome: 'error' as const,
        originalScore: null,
        revisionScore: null,
        error,
      };
    }
  });
  for (const { created, ...item } of items as (SelfCritiqueItem & { created?: boolean })[]) {
    report.items.push(item);
    if (item.outcome === 'error') {
      report.rejected.error++;
      report.firstError ??= item.error;
      continue;
    }
    if (item.outcome === 'no_revision') {
      report.rejected.noRevision++;
      continue;
    }
    report.revised++;
    if (item.outcome === 'kept') {
      // Another run kept this one between our read and our write: not ours to count.
      if (created) report.kept++;
      else report.skipped++;
    } else report.rejected[item.outcome]++;
  }
  return report;
}

async function productionModel(store: Store, projectId: string, route: string | undefined): Promise<string> {
  if (route === undefined)
    throw new RatchetError(
      'invalid_request',
      'selfCritique.writer.model: give the writing model, or a route whose production model writes',
      'writer.model',
    );
  const model = await store.models.production(projectId, route);
  if (!model)
    throw new RatchetError(
      'invalid_request',
      `selfCritique.writer.model: route "${route}" has no production model; name the writing model`,
      'writer.model',
    );
  return model.name;
}
