import {
  comparisonRows,
  type EvaluationItemResult,
  type EvaluationSummary,
  Offset,
  RatchetError,
  worstRegressions,
} from '@ratchet/core';
import {
  createEvaluation,
  type EndpointSpecInput,
  type EvaluationSpecInput,
  evaluationSpecWith,
  runEvaluation,
} from '@ratchet/loop';
import type { Store } from '@ratchet/store';
import { z } from 'zod';
import type { Gateway } from '../gateway/gateway.js';
import type { RouteTable } from '../routing.js';

const EvaluationId = z.strictObject({ id: z.string().min(1).max(100) });

/**
 * An endpoint over the API: an upstream of the server's gateway config, by name, and the model
 * sent to it. The URL, headers and key come from that upstream's configuration, never from the
 * request: a request that could give a URL could make the server call any address it reaches,
 * read part of the answer back, and carry the server's keys there.
 */
const UpstreamEndpoint = z.strictObject(
  {
    /** An upstream of the gateway config (GET /api/v1/upstreams); default: its defaultUpstream. */
    upstream: z.string().min(1).max(200).optional(),
    /** The model name sent to the upstream. */
    model: z.string().min(1).max(200),
    timeoutMs: z.number().int().positive().max(600_000).optional(),
  },
  {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? "not accepted over the API: an endpoint is { upstream, model, timeoutMs }; its URL, headers and key come from the named upstream in the server's gateway config"
        : undefined,
  },
);
type UpstreamEndpoint = z.output<typeof UpstreamEndpoint>;

/** The evaluation spec of the API: the CLI's, with endpoints that name upstreams. */
const EvaluationRequest = evaluationSpecWith(UpstreamEndpoint);
type EvaluationRequest = z.output<typeof EvaluationRequest>;

/** The named upstream of one endpoint; an unknown or missing name is a 400 naming the field. */
function upstreamOf(ref: UpstreamEndpoint, path: string, gateway: Gateway | undefined) {
  const field = `${path}.upstream`;
  if (!gateway)
    throw new RatchetError(
      'invalid_request',
      `${field}: the server has no gateway config (RATCHET_GATEWAY_CONFIG), so there is no upstream to call`,
      field,
    );
  const name = ref.upstream ?? gateway.defaultUpstreamName();
  if (name === undefined)
    throw new RatchetError(
      'invalid_request',
      `${field}: required (the gateway config has no defaultUpstream)`,
      field,
    );
  const config = gateway.upstream(name);
  if (!config)
    throw new RatchetError(
      'invalid_request',
      `${field}: "${name}" is not an upstream of the server's gateway config (upstreams are names, not URLs; known: ${gateway.upstreamNames().join(', ')})`,
      field,
    );
  return { name, config };
}

/**
 * The request with every endpoint's upstream named (what the evaluation records) and the spec
 * the harness runs, whose endpoints carry the upstream's own URL, headers and key variable: a
 * key reaches only the upstream it is configured for.
 */
function resolveUpstreams(
  request: EvaluationRequest,
  gateway: Gateway | undefined,
): { recorded: EvaluationRequest; spec: EvaluationSpecInput } {
  const resolve = <T extends { endpoint: UpstreamEndpoint }>(part: T, path: string) => {
    const { name, config } = upstreamOf(part.endpoint, path, gateway);
    const endpoint: EndpointSpecInput = {
      baseURL: config.baseURL,
      model: part.endpoint.model,
      apiKeyEnv: config.apiKeyEnv,
      headers: config.headers,
      timeoutMs: part.endpoint.timeoutMs ?? config.timeoutMs,
      label: `upstream "${name}"`,
    };
    return {
      recorded: { ...part, endpoint: { ...part.endpoint, upstream: name } },
      run: { ...part, endpoint },
    };
  };
  const candidate = resolve(request.candidate, 'candidate.endpoint');
  const baseline = resolve(request.baseline, 'baseline.endpoint');
  const judge = request.judge && resolve(request.judge, 'judge.endpoint');
  const rewardModel = request.rewardModel && resolve(request.rewardModel, 'rewardModel.endpoint');
  return {
    recorded: {
      ...request,
      candidate: candidate.recorded,
      baseline: baseline.recorded,
      judge: judge?.recorded,
      rewardModel: rewardModel?.recorded,
    },
    spec: {
      ...request,
      candidate: candidate.run,
      baseline: baseline.run,
      judge: judge?.run,
      rewardModel: rewardModel?.run,
    },
  };
}

/** Evaluations: a candidate against production on held-out and built-in suites, with gates. */
export function registerEvalRoutes(
  routes: RouteTable,
  store: Store,
  gateway: () => Gateway | undefined,
): void {
  routes.add({
    method: 'POST',
    url: '/api/v1/evaluations',
    access: 'admin',
    tag: 'evaluation',
    summary:
      "Evaluate a candidate against the production model. Every endpoint (models, judge, reward model) names an upstream of the server's gateway config and a model; URLs are refused. Answers 202 at once and runs in the background; `?wait=true` answers with the finished evaluation.",
    body: EvaluationRequest,
    query: z.strictObject({ wait: z.enum(['true', 'false']).default('false') }),
    response: {
      status: 202,
      description: 'The evaluation, running',
      also: [{ status: 200, description: 'The finished evaluation (?wait=true)' }],
    },
    handler: async ({ principal, body, query, reply }) => {
      const { recorded, spec } = resolveUpstreams(body, gateway());
      const actor = principal.actor;
      const evaluation = await createEvaluation(store, principal.projectId, recorded);
      const run = runEvaluation(store, principal.projectId, spec, { actor, evaluationId: evaluation.id });
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
    access: 'read',
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
    access: 'read',
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
    access: 'read',
    tag: 'evaluation',
    summary: "An evaluation's per-item results (outputs of both models, judgments, scores, segments).",
    params: EvaluationId,
    query: z.strictObject({
      suite: z.enum(['heldout', 'redteam', 'adversarial']).optional(),
      judge: z.enum(['candidate', 'baseline', 'tie']).optional(),
      offset: Offset.default(0),
      limit: z.coerce.number().int().min(1).max(1000).default(100),
    }),
    handler: async ({ principal, params, query }) => {
      if (!(await store.evaluations.get(principal.projectId, params.id)))
        throw new RatchetError('not_found', `evaluation "${params.id}" not found`, 'id');
      return { items: await store.evaluations.items(principal.projectId, params.id, query) };
    },
  });
}
