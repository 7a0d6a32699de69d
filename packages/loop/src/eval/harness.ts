/**
 * The evaluation harness: a candidate against the production model on held-out and built-in
 * suites, both reached through OpenAI-compatible endpoints. Generation, then every judgment
 * (reward model, LLM judge in both orders, detectors), reference metrics, perplexity, the
 * reward model's and the judge's agreement with held-out human ratings, a summary by segment,
 * and the promotion gates. The items, summary and gate verdict are stored together; a candidate
 * that fails stays a candidate and the audit log records why.
 */
import {
  applyGates,
  binaryClassificationMetrics,
  type ChatMessage,
  cohenKappa,
  combineOrders,
  corpusPerplexity,
  DatasetRef,
  defaultGradeRubric,
  defaultPairwiseRubric,
  defaultSafetyRubric,
  detectUnsafe,
  EvaluationGates,
  type EvaluationItemResult,
  type EvaluationSummary,
  evaluationSuites,
  type GateResult,
  gradeJudgePrompt,
  lexiconSafetyClassifier,
  type ModelItemResult,
  pairwiseJudgePrompt,
  parseGradeVerdict,
  parseInput,
  parsePairwiseVerdict,
  RatchetError,
  referenceScores,
  rewardVerdict,
  summarizeEvaluation,
} from '@ratchet/core';
import type { Evaluation, Store } from '@ratchet/store';
import { z } from 'zod';
import {
  chatCompletion,
  completionLogprobs,
  EndpointSpec,
  endpointName,
  type GenerationOptions,
  mapConcurrent,
  rewardScores,
} from './client.js';
import { assembleSuites, type HeldOutItem, loadHeldOut, type SuiteItem } from './suites.js';

/**
 * The evaluation spec around an endpoint schema: `EvaluationSpec` takes URLs (the CLI and the
 * loop, run by the operator); the API builds its own from the same fields with endpoints that
 * name an upstream of the server's configuration, so no request can pick where the server calls.
 */
export function evaluationSpecWith<E extends z.ZodType>(endpoint: E) {
  const modelUnderTest = z.strictObject({
    endpoint,
    /** The registry model (id or name) this endpoint serves, to link the evaluation and its verdict. */
    model: z.string().min(1).optional(),
  });
  return z.strictObject({
    name: z.string().min(1).max(200).optional(),
    candidate: modelUnderTest,
    /** The production model. */
    baseline: modelUnderTest,
    /** Dataset version (id, name or name@version) whose held-out split is the main suite. */
    dataset: DatasetRef.optional(),
    suites: z.array(z.enum(evaluationSuites)).min(1).default(['heldout', 'redteam', 'adversarial']),
    maxItems: z.number().int().positive().max(10_000).default(200),
    /** Held-out prompts that also get adversarial variants. */
    adversarialItems: z.number().int().nonnegative().default(10),
    /** Segment by `tags` and/or `metadata.<key>`. */
    segmentBy: z.array(z.string().regex(/^(tags|metadata\..+)$/, 'tags or metadata.<key>')).default(['tags']),
    judge: z
      .strictObject({
        endpoint,
        rubric: z.string().min(1).default(defaultPairwiseRubric),
        gradeRubric: z.string().min(1).default(defaultGradeRubric),
        safetyRubric: z.string().min(1).default(defaultSafetyRubric),
      })
      .optional(),
    rewardModel: z
      .strictObject({
        endpoint,
        /** Scores above this predict a thumbs up (for precision and recall on held-out thumbs). */
        threshold: z.number().default(0),
        /** Score differences within this are ties. */
        tieMargin: z.number().nonnegative().default(0),
      })
      .optional(),
    perplexity: z.boolean().default(true),
    generation: z
      .strictObject({
        maxTokens: z.number().int().positive().max(32_768).default(256),
        temperature: z.number().min(0).max(2).default(0),
        seed: z.number().int().optional(),
      })
      .prefault({}),
    gates: EvaluationGates.prefault({}),
    concurrency: z.number().int().min(1).max(64).default(4),
  });
}

export const EvaluationSpec = evaluationSpecWith(EndpointSpec);
export type EvaluationSpec = z.output<typeof EvaluationSpec>;
export type EvaluationSpecInput = z.input<typeof EvaluationSpec>;

export type EvaluationStage =
  | 'generate'
  | 'judge'
  | 'reward'
  | 'safety'
  | 'agreement'
  | 'perplexity'
  | 'store';
export interface EvaluationProgress {
  stage: EvaluationStage;
  done: number;
  total: number;
}

export interface EvaluationOutcome {
  evaluation: Evaluation;
  summary: EvaluationSummary;
  gate: GateResult;
  items: EvaluationItemResult[];
}

type Progress = (p: EvaluationProgress) => void;

function counter(stage: EvaluationStage, total: number, onProgress?: Progress) {
  let done = 0;
  onProgress?.({ stage, done, total });
  return () => onProgress?.({ stage, done: ++done, total });
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

async function generateAll(
  items: readonly SuiteItem[],
  spec: EvaluationSpec,
  onProgress?: Progress,
): Promise<{ candidate: ModelItemResult; baseline: ModelItemResult }[]> {
  const tick = counter('generate', items.length * 2, onProgress);
  const options: GenerationOptions = spec.generation;
  const one = async (endpoint: EndpointSpec, messages: ChatMessage[]): Promise<ModelItemResult> => {
    try {
      return { output: await chatCompletion(endpoint, messages, options) };
    } catch (err) {
      return { output: '', error: errorText(err) };
    } finally {
      tick();
    }
  };
  return mapConcurrent(items, spec.concurrency, async (item) => ({
    candidate: await one(spec.candidate.endpoint, item.messages),
    baseline: await one(spec.baseline.endpoint, item.messages),
  }));
}

const answer = (messages: readonly ChatMessage[], content: string): ChatMessage[] => [
  ...messages,
  { role: 'assistant', content },
];

/** The judge in both orders on held-out items; a failed judge call leaves that order null. */
async function judgePairs(
  results: EvaluationItemResult[],
  judge: NonNullable<EvaluationSpec['judge']>,
  spec: EvaluationSpec,
  onProgress?: Progress,
): Promise<string | null> {
  const targets = results.filter((r) => r.suite === 'heldout' && !r.candidate.error && !r.baseline.error);
  const tick = counter('judge', targets.length, onProgress);
  let failed = 0;
  let firstError = '';
  const ask = async (messages: ReturnType<typeof pairwiseJudgePrompt>) => {
    try {
      const verdict = parsePairwiseVerdict(
        await chatCompletion(judge.endpoint, messages, { maxTokens: 512, temperature: 0 }),
      );
      if (verdict === null) failed++;
      return verdict;
    } catch (err) {
      failed++;
      firstError ||= errorText(err);
      return null;
    }
  };
  await mapConcurrent(targets, spec.concurrency, async (r) => {
    const first = await ask(
      pairwiseJudgePrompt(r.prompt, r.candidate.output, r.baseline.output, judge.rubric),
    );
    const second = await ask(
      pairwiseJudgePrompt(r.prompt, r.baseline.output, r.candidate.output, judge.rubric),
    );
    r.judgeOrders = [first, second];
    r.judge = first === null && second === null ? null : combineOrders(first, second);
    tick();
  });
  // A model whose generation failed loses that item outright.
  for (const r of results.filter((x) => x.suite === 'heldout')) {
    if (r.candidate.error && !r.baseline.error) r.judge = 'baseline';
    else if (r.baseline.error && !r.candidate.error) r.judge = 'candidate';
  }
  return failed === 0
    ? null
    : `judge: ${failed} of ${targets.length * 2} pairwise calls failed or gave no verdict (one missing order makes a tie; an item missing both is left out)${firstError ? `; first error: ${firstError}` : ''}`;
}

async function gradeWithJudge(
  judge: NonNullable<EvaluationSpec['judge']>,
  conversation: readonly ChatMessage[],
  output: string,
  rubric: string,
  labels: readonly [string, string],
): Promise<boolean | null> {
  try {
    const text = await chatCompletion(
      judge.endpoint,
      gradeJudgePrompt(conversation, output, rubric, labels),
      {
        maxTokens: 512,
        temperature: 0,
      },
    );
    return parseGradeVerdict(text, labels);
  } catch {
    return null;
  }
}

async function scoreSafety(
  results: EvaluationItemResult[],
  items: readonly SuiteItem[],
  spec: EvaluationSpec,
  onProgress?: Progress,
): Promise<void> {
  const probes = items.map((it, i) => ({ it, r: results[i]! })).filter((x) => x.it.probe);
  const tick = counter('safety', probes.length, onProgress);
  const classifier = lexiconSafetyClassifier();
  for (const side of ['candidate', 'baseline'] as const) {
    const scores = await detectUnsafe(
      probes.map((p) => p.it.probe!),
      probes.map((p) => p.r[side].output),
      classifier,
    );
    probes.forEach((p, i) => {
      p.r[side].unsafe = scores[i]!.unsafe;
      p.r[side].safetyReasons = scores[i]!.reasons;
    });
  }
  await mapConcurrent(probes, spec.concurrency, async ({ r }) => {
    if (spec.judge) {
      for (const side of ['candidate', 'baseline'] as const) {
        if (r[side].error) continue;
        const safe = await gradeWithJudge(spec.judge, r.prompt, r[side].output, spec.judge.safetyRubric, [
          'SAFE',
          'UNSAFE',
        ]);
        if (safe === false) {
          r[side].unsafe = true;
          r[side].safetyReasons = [...(r[side].safetyReasons ?? []), 'judge: UNSAFE'];
        }
      }
    }
    tick();
  });
}

async function scoreRewards(
  results: EvaluationItemResult[],
  heldOut: readonly HeldOutItem[],
  rm: NonNullable<EvaluationSpec['rewardModel']>,
  onProgress?: Progress,
): Promise<EvaluationSummary['rewardModel']> {
  const targets = results.filter((r) => r.suite === 'heldout');
  const rated = heldOut.filter((h) => h.thumbsUp !== null);
  const tick = counter('reward', targets.length + rated.length, onProgress);
  const BATCH = 16;
  for (let i = 0; i < targets.length; i += BATCH) {
    const part = targets.slice(i, i + BATCH);
    const scores = await rewardScores(
      rm.endpoint,
      part.flatMap((r) => [answer(r.prompt, r.candidate.output), answer(r.prompt, r.baseline.output)]),
    );
    part.forEach((r, j) => {
      r.candidate.reward = r.candidate.error ? null : scores[2 * j]!;
      r.baseline.reward = r.baseline.error ? null : scores[2 * j + 1]!;
      if (r.candidate.error || r.baseline.error)
        r.rewardVerdict = r.candidate.error ? 'baseline' : 'candidate';
      else r.rewardVerdict = rewardVerdict(r.candidate.reward!, r.baseline.reward!, rm.tieMargin);
      tick();
    });
  }
  if (rated.length === 0) return null;
  const logged: number[] = [];
  for (let i = 0; i < rated.length; i += BATCH) {
    const part = rated.slice(i, i + BATCH);
    logged.push(
      ...(await rewardScores(
        rm.endpoint,
        part.map((h) => answer(h.messages, h.loggedOutput)),
      )),
    );
    for (const _ of part) tick();
  }
  return {
    ...binaryClassificationMetrics(
      logged.map((s) => s > rm.threshold),
      rated.map((h) => h.thumbsUp!),
    ),
    n: rated.length,
    threshold: rm.threshold,
  };
}

/** The judge grades the logged answers that people rated; Cohen's kappa against their thumbs. */
async function judgeAgreement(
  heldOut: readonly HeldOutItem[],
  judge: NonNullable<EvaluationSpec['judge']>,
  spec: EvaluationSpec,
  onProgress?: Progress,
): Promise<EvaluationSummary['judgeAgreement']> {
  const rated = heldOut.filter((h) => h.thumbsUp !== null);
  if (rated.length === 0) return null;
  const tick = counter('agreement', rated.length, onProgress);
  const grades = await mapConcurrent(rated, spec.concurrency, async (h) => {
    const g = await gradeWithJudge(judge, h.messages, h.loggedOutput, judge.gradeRubric, ['GOOD', 'BAD']);
    tick();
    return g;
  });
  const pairs = rated.flatMap((h, i) =>
    grades[i] === null ? [] : [[grades[i] ? 1 : 0, h.thumbsUp ? 1 : 0]],
  );
  if (pairs.length === 0) return null;
  return {
    kappa: cohenKappa(
      pairs.map((p) => p[0]!),
      pairs.map((p) => p[1]!),
    ),
    agreement: pairs.filter((p) => p[0] === p[1]).length / pairs.length,
    n: pairs.length,
  };
}

async function measurePerplexity(
  heldOut: readonly HeldOutItem[],
  spec: EvaluationSpec,
  onProgress?: Progress,
): Promise<NonNullable<Parameters<typeof summarizeEvaluation>[1]>['perplexity']> {
  const positive = heldOut.filter((h) => h.positive);
  if (!spec.perplexity || positive.length === 0) {
    return {
      candidate: null,
      baseline: null,
      note: spec.perplexity ? 'perplexity: no positively rated held-out answers' : undefined,
    };
  }
  const tick = counter('perplexity', positive.length * 2, onProgress);
  const out: NonNullable<NonNullable<Parameters<typeof summarizeEvaluation>[1]>['perplexity']> = {
    candidate: null,
    baseline: null,
  };
  const missing: string[] = [];
  const scored: Partial<Record<'candidate' | 'baseline', number[][]>> = {};
  for (const side of ['candidate', 'baseline'] as const) {
    const endpoint = spec[side].endpoint;
    const sequences: number[][] = [];
    let unavailable: string | null = null;
    for (const h of positive) {
      if (unavailable === null) {
        try {
          const lp = await completionLogprobs(endpoint, h.messages, h.loggedOutput);
          if (lp === null) unavailable = 'the endpoint has no POST /v1/logprobs returning token_logprobs';
          else sequences.push(lp);
        } catch (err) {
          // Perplexity is one metric among many: an endpoint that fails here loses it, not the evaluation.
          unavailable = errorText(err);
        }
      }
      tick();
    }
    if (unavailable === null) {
      out[side] = corpusPerplexity(sequences);
      scored[side] = sequences;
    } else missing.push(`${side} (${endpointName(endpoint)}): ${unavailable}`);
  }
  // Per answer, each model's mean negative log-likelihood per token: the gate's paired interval.
  const meanNll = (lp: readonly number[]) => -lp.reduce((a, x) => a + x, 0) / lp.length;
  if (scored.candidate && scored.baseline)
    out.perAnswer = scored.candidate.flatMap((c, i) => {
      const b = scored.baseline![i]!;
      return c.length > 0 && b.length > 0 ? [{ candidate: meanNll(c), baseline: meanNll(b) }] : [];
    });
  if (missing.length) out.note = `perplexity unavailable for ${missing.join('; ')}`;
  return out;
}

async function resolveModelId(store: Store, projectId: string, ref: string | undefined, field: string) {
  if (!ref) return null;
  const model = await store.models.get(projectId, ref);
  if (!model) throw new RatchetError('not_found', `${field}: model "${ref}" is not in the registry`, field);
  return model.id;
}

/** Builds the suites, runs every judgment, stores the results and applies the gates. */
export async function runEvaluation(
  store: Store,
  projectId: string,
  specInput: EvaluationSpecInput,
  options: { onProgress?: Progress; actor?: string; evaluationId?: string } = {},
): Promise<EvaluationOutcome> {
  const spec = parseInput(EvaluationSpec, specInput);
  const candidateModelId = await resolveModelId(store, projectId, spec.candidate.model, 'candidate.model');
  const baselineModelId = await resolveModelId(store, projectId, spec.baseline.model, 'baseline.model');
  if (spec.suites.includes('heldout') && !spec.dataset && spec.suites.length === 1)
    throw new RatchetError(
      'invalid_request',
      'dataset: the heldout suite needs a dataset version',
      'dataset',
    );
  const heldOut = spec.dataset ? (await loadHeldOut(store, projectId, spec.dataset, spec)).items : [];
  const created = options.evaluationId
    ? (await store.evaluations.get(projectId, options.evaluationId))!
    : await store.evaluations.create(projectId, {
        name: spec.name ?? null,
        candidateModelId,
        baselineModelId,
        spec,
      });
  try {
    return await evaluate(store, projectId, created, spec, heldOut, options);
  } catch (err) {
    await store.evaluations.fail(projectId, created.id, errorText(err));
    throw err;
  }
}

/** What an evaluation row needs from a spec, whichever kind of endpoints it has. */
interface EvaluationRecord {
  name?: string | undefined;
  candidate: { model?: string | undefined };
  baseline: { model?: string | undefined };
  dataset?: string | undefined;
}

/**
 * Creates the evaluation row only, so an API can answer at once and run the rest in the
 * background. `spec` is stored as given: the API passes its request, which names upstreams, so
 * the stored spec never holds the URLs and headers they resolve to.
 */
export async function createEvaluation(store: Store, projectId: string, spec: EvaluationRecord) {
  const candidateModelId = await resolveModelId(store, projectId, spec.candidate.model, 'candidate.model');
  const baselineModelId = await resolveModelId(store, projectId, spec.baseline.model, 'baseline.model');
  if (spec.dataset && !(await store.datasets.get(projectId, spec.dataset)))
    throw new RatchetError('not_found', `dataset: "${spec.dataset}" not found`, 'dataset');
  return store.evaluations.create(projectId, {
    name: spec.name ?? null,
    candidateModelId,
    baselineModelId,
    spec,
  });
}

async function evaluate(
  store: Store,
  projectId: string,
  evaluation: Evaluation,
  spec: EvaluationSpec,
  heldOut: HeldOutItem[],
  options: { onProgress?: Progress; actor?: string },
): Promise<EvaluationOutcome> {
  const suiteItems = assembleSuites(spec.suites, heldOut, spec.adversarialItems);
  if (suiteItems.length === 0)
    throw new RatchetError(
      'invalid_request',
      'suites: nothing to evaluate (is the held-out split empty?)',
      'suites',
    );
  const generated = await generateAll(suiteItems, spec, options.onProgress);
  const results: EvaluationItemResult[] = suiteItems.map((it, index) => {
    const g = generated[index]!;
    const h = it.heldOut;
    const withReference = (m: ModelItemResult): ModelItemResult =>
      h?.reference && !m.error ? { ...m, reference: referenceScores(m.output, h.reference) } : m;
    return {
      index,
      suite: it.suite,
      itemId: it.itemId,
      category: it.category,
      segments: it.segments,
      prompt: it.messages,
      reference: h?.reference ?? null,
      referenceKind: h?.referenceKind ?? null,
      candidate: withReference(g.candidate),
      baseline: withReference(g.baseline),
      judge: null,
      judgeOrders: null,
      rewardVerdict: null,
    };
  });
  const notes: string[] = [];
  if (spec.judge) {
    const judgeNote = await judgePairs(results, spec.judge, spec, options.onProgress);
    if (judgeNote) notes.push(judgeNote);
  } else notes.push('no LLM judge configured: judge win rate and judge agreement not measured');
  let rewardModel: EvaluationSummary['rewardModel'] = null;
  if (spec.rewardModel)
    rewardModel = await scoreRewards(results, heldOut, spec.rewardModel, options.onProgress);
  else notes.push('no reward model configured: reward win rate not measured');
  await scoreSafety(results, suiteItems, spec, options.onProgress);
  const judgeAgreementResult = spec.judge
    ? await judgeAgreement(heldOut, spec.judge, spec, options.onProgress)
    : null;
  const perplexity = await measurePerplexity(heldOut, spec, options.onProgress);
  const summary = summarizeEvaluation(
    results,
    { perplexity, judgeAgreement: judgeAgreementResult, rewardModel, notes },
    { minSegmentItems: spec.gates.segments.minItems },
  );
  const gate = applyGates(summary, spec.gates);
  options.onProgress?.({ stage: 'store', done: 0, total: 1 });
  const stored = await store.evaluations.complete(
    projectId,
    evaluation.id,
    {
      items: results.map((r) => ({
        index: r.index,
        suite: r.suite,
        itemId: r.itemId,
        category: r.category,
        judge: r.judge,
        result: r,
      })),
      summary,
      gate: { ...gate },
    },
    options.actor,
  );
  options.onProgress?.({ stage: 'store', done: 1, total: 1 });
  return { evaluation: stored, summary, gate, items: results };
}
