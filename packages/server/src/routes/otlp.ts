import { type ChatMessage, InteractionInput, type ParsedInteraction, RatchetError } from '@ratchet/core';
import { z } from 'zod';
import type { CaptureService } from '../capture.js';
import type { RouteTable } from '../routing.js';

// OTLP/HTTP JSON (ExportTraceServiceRequest), only the parts we read. Unknown fields pass.
const AnyValue: z.ZodType<OtlpValue> = z.lazy(() =>
  z.looseObject({
    stringValue: z.string().optional(),
    boolValue: z.boolean().optional(),
    intValue: z.union([z.string(), z.number()]).optional(),
    doubleValue: z.number().optional(),
    arrayValue: z.looseObject({ values: z.array(AnyValue).optional() }).optional(),
    kvlistValue: z
      .looseObject({
        values: z.array(z.looseObject({ key: z.string(), value: AnyValue.optional() })).optional(),
      })
      .optional(),
  }),
);
interface OtlpValue {
  stringValue?: string | undefined;
  boolValue?: boolean | undefined;
  intValue?: string | number | undefined;
  doubleValue?: number | undefined;
  arrayValue?: { values?: OtlpValue[] | undefined } | undefined;
  kvlistValue?: { values?: { key: string; value?: OtlpValue | undefined }[] | undefined } | undefined;
}
const Attributes = z.array(z.looseObject({ key: z.string(), value: AnyValue.optional() })).optional();
const Span = z.looseObject({
  traceId: z.string(),
  spanId: z.string(),
  name: z.string().optional(),
  startTimeUnixNano: z.union([z.string(), z.number()]).optional(),
  endTimeUnixNano: z.union([z.string(), z.number()]).optional(),
  attributes: Attributes,
  events: z.array(z.looseObject({ name: z.string(), attributes: Attributes })).optional(),
  status: z
    .looseObject({ code: z.union([z.number(), z.string()]).optional(), message: z.string().optional() })
    .optional(),
});
const ExportTraceServiceRequest = z.looseObject({
  resourceSpans: z
    .array(
      z.looseObject({
        resource: z.looseObject({ attributes: Attributes }).optional(),
        scopeSpans: z.array(z.looseObject({ spans: z.array(Span).optional() })).optional(),
      }),
    )
    .optional(),
});
type Span = z.output<typeof Span>;

function plain(v: OtlpValue | undefined): unknown {
  if (!v) return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(plain);
  if (v.kvlistValue)
    return Object.fromEntries((v.kvlistValue.values ?? []).map((kv) => [kv.key, plain(kv.value)]));
  return undefined;
}

function attributeMap(attrs: z.output<typeof Attributes>): Map<string, unknown> {
  return new Map((attrs ?? []).map((a) => [a.key, plain(a.value)]));
}

const genAiOperations = new Set(['chat', 'text_completion', 'generate_content']);

/** Semantic-convention messages ({role, parts:[{type:'text', content}]}) or plain {role, content}. */
function toChatMessages(value: unknown): ChatMessage[] | undefined {
  const parsed = typeof value === 'string' ? safeJson(value) : value;
  if (!Array.isArray(parsed)) return undefined;
  return parsed.map((m: Record<string, unknown>) => {
    const role = (m.role as ChatMessage['role']) ?? 'user';
    if (Array.isArray(m.parts)) {
      const text = m.parts
        .filter((p: Record<string, unknown>) => p.type === 'text')
        .map((p: Record<string, unknown>) => String(p.content ?? ''))
        .join('');
      return { role, content: text };
    }
    return { role, content: typeof m.content === 'string' ? m.content : JSON.stringify(m.content ?? '') };
  });
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** OpenLLMetry-style indexed attributes: gen_ai.prompt.0.role, gen_ai.prompt.0.content, ... */
function indexedMessages(attrs: Map<string, unknown>, prefix: string): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (let i = 0; attrs.has(`${prefix}.${i}.content`) || attrs.has(`${prefix}.${i}.role`); i++) {
    out.push({
      role: (attrs.get(`${prefix}.${i}.role`) as ChatMessage['role']) ?? 'user',
      content: String(attrs.get(`${prefix}.${i}.content`) ?? ''),
    });
  }
  return out;
}

/** Older conventions put messages in span events (gen_ai.user.message, gen_ai.choice, ...). */
function eventMessages(span: Span): { input: ChatMessage[]; output: ChatMessage[] } {
  const input: ChatMessage[] = [];
  const output: ChatMessage[] = [];
  for (const e of span.events ?? []) {
    const a = attributeMap(e.attributes);
    const role = /^gen_ai\.(system|user|assistant|tool)\.message$/.exec(e.name)?.[1];
    if (role) input.push({ role: role as ChatMessage['role'], content: String(a.get('content') ?? '') });
    if (e.name === 'gen_ai.choice') {
      const message = a.get('message');
      const content =
        typeof message === 'object' && message !== null
          ? (message as Record<string, unknown>).content
          : a.get('content');
      output.push({ role: 'assistant', content: String(content ?? '') });
    }
  }
  return { input, output };
}

function nanosToMs(v: string | number | undefined): number | undefined {
  if (v === undefined) return undefined;
  return Number(BigInt(v) / 1_000_000n);
}

/** A GenAI span as an interaction, or undefined when the span is not a model call. */
export function spanToInteraction(span: Span, resource: Map<string, unknown>): ParsedInteraction | undefined {
  const a = attributeMap(span.attributes);
  const operation = a.get('gen_ai.operation.name');
  const hasGenAi = [...a.keys()].some((k) => k.startsWith('gen_ai.'));
  if (!hasGenAi || (operation !== undefined && !genAiOperations.has(String(operation)))) return undefined;

  const events = eventMessages(span);
  const system = a.get('gen_ai.system_instructions');
  const systemMessages =
    toChatMessages(system) ??
    (typeof system === 'string' ? [{ role: 'system' as const, content: system }] : []);
  const input = [
    ...systemMessages.map((m) => ({ ...m, role: 'system' as const })),
    ...(toChatMessages(a.get('gen_ai.input.messages')) ??
      (indexedMessages(a, 'gen_ai.prompt').length ? indexedMessages(a, 'gen_ai.prompt') : events.input)),
  ];
  const output =
    toChatMessages(a.get('gen_ai.output.messages')) ??
    (indexedMessages(a, 'gen_ai.completion').length
      ? indexedMessages(a, 'gen_ai.completion')
      : events.output);

  const start = nanosToMs(span.startTimeUnixNano);
  const end = nanosToMs(span.endTimeUnixNano);
  const num = (k: string) => (typeof a.get(k) === 'number' ? (a.get(k) as number) : undefined);
  const parameters = Object.fromEntries(
    [...a.entries()]
      .filter(([k]) => k.startsWith('gen_ai.request.') && k !== 'gen_ai.request.model')
      .map(([k, v]) => [k.slice('gen_ai.request.'.length), v]),
  );
  const tags = a.get('ratchet.tags');
  const statusCode = span.status?.code;
  const candidate = {
    id: String(a.get('ratchet.interaction_id') ?? `${span.traceId}-${span.spanId}`),
    route: a.get('ratchet.route'),
    variant: a.get('ratchet.variant'),
    model: a.get('gen_ai.response.model') ?? a.get('gen_ai.request.model'),
    messages: input,
    output: output[0] ?? { role: 'assistant', content: '' },
    parameters,
    latencyMs: start !== undefined && end !== undefined ? Math.max(0, end - start) : undefined,
    usage: {
      inputTokens: num('gen_ai.usage.input_tokens') ?? num('gen_ai.usage.prompt_tokens'),
      outputTokens: num('gen_ai.usage.output_tokens') ?? num('gen_ai.usage.completion_tokens'),
    },
    sessionId: a.get('gen_ai.conversation.id') ?? a.get('session.id'),
    userId: a.get('enduser.id') ?? a.get('user.id'),
    metadata: {
      provider: a.get('gen_ai.provider.name') ?? a.get('gen_ai.system'),
      responseId: a.get('gen_ai.response.id'),
      finishReasons: a.get('gen_ai.response.finish_reasons'),
      service: resource.get('service.name'),
      spanName: span.name,
    },
    tags: Array.isArray(tags)
      ? tags.map(String)
      : typeof tags === 'string'
        ? tags.split(',').filter(Boolean)
        : undefined,
    status: statusCode === 2 || statusCode === 'STATUS_CODE_ERROR' ? 'error' : 'ok',
    error: span.status?.message || undefined,
    traceId: span.traceId,
    spanId: span.spanId,
    source: 'otlp',
    createdAt: start,
  };
  const clean = JSON.parse(JSON.stringify(candidate));
  const parsed = InteractionInput.safeParse(clean);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new RatchetError(
      'invalid_request',
      `span ${span.spanId}: ${issue.path.join('.')}: ${issue.message}`,
    );
  }
  return parsed.data;
}

export function registerOtlpRoutes(routes: RouteTable, capture: CaptureService): void {
  routes.add({
    method: 'POST',
    url: '/v1/traces',
    access: 'ingest',
    tag: 'capture',
    summary:
      'OTLP/HTTP JSON trace export; OpenTelemetry GenAI spans become interactions, other spans are ignored.',
    body: ExportTraceServiceRequest,
    handler: async ({ body, principal }) => {
      const interactions: ParsedInteraction[] = [];
      const rejected: string[] = [];
      for (const rs of body.resourceSpans ?? []) {
        const resource = attributeMap(rs.resource?.attributes);
        for (const ss of rs.scopeSpans ?? []) {
          for (const span of ss.spans ?? []) {
            try {
              const interaction = spanToInteraction(span, resource);
              if (interaction) interactions.push(interaction);
            } catch (err) {
              rejected.push(err instanceof Error ? err.message : String(err));
            }
          }
        }
      }
      if (interactions.length) await capture.writeInteractions(principal.projectId, interactions);
      // OTLP's partial-success contract: good spans are kept, the rest counted and explained.
      return rejected.length
        ? {
            partialSuccess: { rejectedSpans: rejected.length, errorMessage: rejected.slice(0, 5).join('; ') },
          }
        : {};
    },
  });
}
