import {
  comparisonRows,
  type EvaluationItemResult,
  type EvaluationSummary,
  RatchetError,
  worstRegressions,
} from '@ratchet/core';
import { createEvaluation, EvaluationSpec, runEvaluation } from '@ratchet/loop';
import type { Store } from '@ratchet/store';
import { z } from 'zod';
import type { RouteTable } from '../routing.js';

const EvaluationId = z.strictObject({ id: z.string().min(1).max(100) });

/**
 * An endpoint's `apiKeyEnv` makes the server send that environment variable as a bearer token to
 * the endpoint's URL, so over the API only the names an operator lists in
 * RATCHET_EVAL_KEY_ENVS (comma-separated) are allowed; otherwise any caller could send the
 * server's secrets to a URL of their choosing.
 */
function checkKeyEnvs(spec: EvaluationSpec, allowed: ReadonlySet<string>): void {
  const endpoints: [string, { apiKeyEnv?: string | undefined } | undefined][] = [
    ['candidate.endpoint', spec.candidate.endpoint],
    ['baseline.endpoint', spec.baseline.endpoint],
    ['judge.endpoint', spec.judge?.endpoint],
    ['rewardModel.endpoint', spec.rewardModel?.endpoint],
  ];
  for (const [path, e] of endpoints) {
    if (e?.apiKeyEnv && !allowed.has(e.apiKeyEnv))
      throw new RatchetError(
        'invalid_request',
        `${path}.apiKeyEnv: "${e.apiKeyEnv}" is not listed in RATCHET_EVAL_KEY_ENVS on the server`,
        `${path}.apiKeyEnv`,
      );
  }
}

/** Evaluations: a candidate against production on held-out and built-in suites, with gates. */
export function registerEvalRoutes(routes: RouteTable, store: Store): void {
  routes.add({
    method: 'POST',
    url: '/api/v1/evaluations',
    access: 'secret',
    tag: 'evaluation',
    summary:
      'Evaluate a candidate against the production model (both OpenAI-compatible endpoints). Answers 202 at once and runs in the background; `?wait=true` answers with the finished evaluation.',
    body: EvaluationSpec,
    query: z.strictObject({ wait: z.enum(['true', 'false']).default('false') }),
    response: { status: 202, description: 'The evaluation (running, or finished with ?wait=true)' },
    handler: async ({ principal, body, query, reply }) => {
      checkKeyEnvs(
        body,
        new Set(
          (process.env.RATCHET_EVAL_KEY_ENVS ?? '')
            .split(',')
            .map((n) => n.trim())
            .filter(Boolean),
        ),
      );
      const actor = `api:${principal.keyId}`;
      const evaluation = await createEvaluation(store, principal.projectId, body);
      const run = runEvaluation(store, principal.projectId, body, { actor, evaluationId: evaluation.id });
      if (query.wait === 'true') {
        try {
          const outcome = await run;
          reply.status(200);
          return outcome.evaluation;
        } catch (err) {
          if (err instanceof RatchetError) throw err;
          // An endpoint failed; the evaluation is recorded as failed with the same message.
          throw new RatchetError(
            'upstream_error',
            `evaluation ${evaluation.id} failed: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
      }
      // The failure is recorded on the evaluation (status failed, error); nothing else to do here.
      run.catch(() => {});
      return evaluation;
    },
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/evaluations',
    access: 'secret',
    tag: 'evaluation',
    summary: 'Evaluations, newest first (filter by candidate model id).',
    query: z.strictObject({
      modelId: z.string().optional(),
      limit: z.coerce.number().int().min(1).max(1000).default(100),
    }),
    handler: async ({ principal, query }) => ({
      items: await store.evaluations.list(principal.projectId, query),
    }),
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/evaluations/:id',
    access: 'secret',
    tag: 'evaluation',
    summary:
      'One evaluation: the side-by-side table of candidate and production, the gate verdict with reasons, and the worst regressions.',
    params: EvaluationId,
    handler: async ({ principal, params }) => {
      const evaluation = await store.evaluations.get(principal.projectId, params.id);
      if (!evaluation) throw new RatchetError('not_found', `evaluation "${params.id}" not found`, 'id');
      if (evaluation.status !== 'succeeded') return { ...evaluation, comparison: [], regressions: [] };
      const items = await store.evaluations.items(principal.projectId, evaluation.id);
      return {
        ...evaluation,
        comparison: comparisonRows(evaluation.summary as unknown as EvaluationSummary),
        regressions: worstRegressions(
          items.map((i) => i.result as EvaluationItemResult),
          20,
        ),
      };
    },
  });
  routes.add({
    method: 'GET',
    url: '/api/v1/evaluations/:id/items',
    access: 'secret',
    tag: 'evaluation',
    summary: "An evaluation's per-item results (outputs of both models, judgments, scores, segments).",
    params: EvaluationId,
    query: z.strictObject({
      suite: z.enum(['heldout', 'redteam', 'adversarial']).optional(),
      judge: z.enum(['candidate', 'baseline', 'tie']).optional(),
      offset: z.coerce.number().int().min(0).default(0),
      limit: z.coerce.number().int().min(1).max(1000).default(100),
    }),
    handler: async ({ principal, params, query }) => {
      if (!(await store.evaluations.get(principal.projectId, params.id)))
        throw new RatchetError('not_found', `evaluation "${params.id}" not found`, 'id');
      return { items: await store.evaluations.items(principal.projectId, params.id, query) };
    },
  });
}
