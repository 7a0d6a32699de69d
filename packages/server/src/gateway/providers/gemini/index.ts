import type { FinishReason } from '@google/genai';
import { RatchetError } from '@ratchet/core';
import type OpenAI from 'openai';
import type { UpstreamConfig } from '../../config.js';
import { apiKey, UpstreamHttp } from '../http.js';
import {
  chunkLine,
  contentParts,
  contentText,
  DONE,
  dataUrl,
  errorTypeFor,
  isObject,
  parseArguments,
  type StreamTranslator,
  stopList,
  translateResponse,
} from '../translate.js';
import type { Provider, UpstreamResponse } from '../types.js';

type Json = Record<string, unknown>;

/**
 * OpenAI's `finish_reason` for each Gemini `finishReason` (a call of a function overrides it),
 * every value the official SDK's enum lists (a new one fails tsc until it is mapped here).
 */
const finishReasons: Record<`${FinishReason}`, OpenAI.Chat.ChatCompletion.Choice['finish_reason']> = {
  STOP: 'stop',
  MAX_TOKENS: 'length',
  SAFETY: 'content_filter',
  RECITATION: 'content_filter',
  BLOCKLIST: 'content_filter',
  PROHIBITED_CONTENT: 'content_filter',
  SPII: 'content_filter',
  IMAGE_SAFETY: 'content_filter',
  IMAGE_PROHIBITED_CONTENT: 'content_filter',
  IMAGE_RECITATION: 'content_filter',
  FINISH_REASON_UNSPECIFIED: 'stop',
  LANGUAGE: 'stop',
  OTHER: 'stop',
  MALFORMED_FUNCTION_CALL: 'stop',
  UNEXPECTED_TOOL_CALL: 'stop',
  TOO_MANY_TOOL_CALLS: 'stop',
  NO_IMAGE: 'stop',
  IMAGE_OTHER: 'stop',
  CONTINUATION: 'stop',
};

function parts(content: unknown): Json[] {
  return contentParts(content).map((part, i) => {
    if (part.type === 'text') return { text: part.text };
    const url = isObject(part.image_url) ? part.image_url.url : undefined;
    const data = dataUrl(url);
    if (data) return { inlineData: { mimeType: data.mediaType, data: data.data } };
    throw new RatchetError(
      'invalid_request',
      `content part of type "${String(part.type)}" has no Gemini form`,
      `messages.content.${i}`,
    );
  });
}

/** OpenAI's messages as Gemini's `systemInstruction` and user/model `contents`. */
function contents(list: Json[]): { systemInstruction?: Json; contents: Json[] } {
  const system: string[] = [];
  const out: Json[] = [];
  // A tool result names its function in Gemini; OpenAI's names only the call id.
  const callNames = new Map<string, unknown>();
  const push = (role: string, p: Json[]) => {
    const last = out.at(-1);
    if (last && last.role === role) (last.parts as Json[]).push(...p);
    else out.push({ role, parts: p });
  };
  for (const m of list) {
    if (m.role === 'system' || m.role === 'developer') system.push(contentText(m.content));
    else if (m.role === 'assistant') {
      const calls = Array.isArray(m.tool_calls) ? m.tool_calls.filter(isObject) : [];
      const p = [
        ...parts(m.content),
        ...calls.map((c) => {
          const fn = isObject(c.function) ? c.function : {};
          callNames.set(String(c.id), fn.name);
          return { functionCall: { name: fn.name, args: parseArguments(fn.arguments) } };
        }),
      ];
      push('model', p);
    } else if (m.role === 'tool')
      push('user', [
        {
          functionResponse: {
            name: callNames.get(String(m.tool_call_id)) ?? String(m.tool_call_id),
            response: { content: contentText(m.content) },
          },
        },
      ]);
    else push('user', parts(m.content));
  }
  return {
    ...(system.length ? { systemInstruction: { parts: [{ text: system.join('\n\n') }] } } : {}),
    contents: out,
  };
}

function generationConfig(body: Json): Json {
  const format = isObject(body.response_format) ? body.response_format : undefined;
  const schema =
    format?.type === 'json_schema' && isObject(format.json_schema) ? format.json_schema.schema : undefined;
  const config: Json = {
    ...(body.temperature !== undefined ? { temperature: body.temperature } : {}),
    ...(body.top_p !== undefined ? { topP: body.top_p } : {}),
    ...((body.max_completion_tokens ?? body.max_tokens) !== undefined
      ? { maxOutputTokens: body.max_completion_tokens ?? body.max_tokens }
      : {}),
    ...(stopList(body.stop) ? { stopSequences: stopList(body.stop) } : {}),
    ...(typeof body.n === 'number' && body.n > 1 ? { candidateCount: body.n } : {}),
    ...(body.seed !== undefined ? { seed: body.seed } : {}),
    ...(format && format.type !== 'text' ? { responseMimeType: 'application/json' } : {}),
    ...(schema ? { responseJsonSchema: schema } : {}),
  };
  return config;
}

function toolConfig(choice: unknown): Json | undefined {
  if (choice === 'auto') return { functionCallingConfig: { mode: 'AUTO' } };
  if (choice === 'required') return { functionCallingConfig: { mode: 'ANY' } };
  if (choice === 'none') return { functionCallingConfig: { mode: 'NONE' } };
  if (isObject(choice) && isObject(choice.function))
    return { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: [choice.function.name] } };
  return undefined;
}

/** An OpenAI chat request as a Gemini GenerateContentRequest (https://ai.google.dev/api/generate-content). */
export function toGeminiRequest(body: Json): Json {
  const declarations = Array.isArray(body.tools)
    ? body.tools
        .filter(isObject)
        .map((t) => (isObject(t.function) ? t.function : {}))
        .map((fn) => ({
          name: fn.name,
          ...(typeof fn.description === 'string' ? { description: fn.description } : {}),
          ...(isObject(fn.parameters) ? { parametersJsonSchema: fn.parameters } : {}),
        }))
    : [];
  const config = generationConfig(body);
  return {
    ...contents((body.messages as Json[]) ?? []),
    ...(Object.keys(config).length ? { generationConfig: config } : {}),
    ...(declarations.length ? { tools: [{ functionDeclarations: declarations }] } : {}),
    ...(toolConfig(body.tool_choice) ? { toolConfig: toolConfig(body.tool_choice) } : {}),
  };
}

function usage(u: unknown): Json | undefined {
  if (!isObject(u)) return undefined;
  const prompt = Number(u.promptTokenCount ?? 0);
  const completion = Number(u.candidatesTokenCount ?? 0) + Number(u.thoughtsTokenCount ?? 0);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: Number(u.totalTokenCount ?? prompt + completion),
  };
}

function candidateParts(c: Json): Json[] {
  return isObject(c.content) && Array.isArray(c.content.parts) ? c.content.parts.filter(isObject) : [];
}

function callsOf(ps: Json[], index: number, offset = 0): Json[] {
  return ps
    .filter((p) => isObject(p.functionCall))
    .map((p, k) => {
      const call = p.functionCall as Json;
      return {
        id: typeof call.id === 'string' ? call.id : `call_${index}_${offset + k}`,
        type: 'function',
        function: { name: call.name, arguments: JSON.stringify(call.args ?? {}) },
      };
    });
}

function textOf(ps: Json[]): string {
  // Thought summaries are the model's reasoning, not its answer.
  return ps
    .filter((p) => typeof p.text === 'string' && p.thought !== true)
    .map((p) => p.text as string)
    .join('');
}

function finish(reason: unknown, calledTools: boolean): string | null {
  if (typeof reason !== 'string') return null;
  if (calledTools && reason === 'STOP') return 'tool_calls';
  return Object.hasOwn(finishReasons, reason) ? finishReasons[reason as FinishReason] : 'stop';
}

/** A Gemini GenerateContentResponse as an OpenAI chat completion (one choice per candidate). */
export function fromGeminiResponse(r: Json, model: unknown): Json {
  const candidates = Array.isArray(r.candidates) ? r.candidates.filter(isObject) : [];
  return {
    id: typeof r.responseId === 'string' ? r.responseId : `gemini-${Date.now().toString(36)}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: r.modelVersion ?? model,
    choices: candidates.map((c, position) => {
      const index = typeof c.index === 'number' ? c.index : position;
      const ps = candidateParts(c);
      const calls = callsOf(ps, index);
      const text = textOf(ps);
      return {
        index,
        message: {
          role: 'assistant',
          content: calls.length && !text ? null : text,
          ...(calls.length ? { tool_calls: calls } : {}),
        },
        finish_reason: finish(c.finishReason, calls.length > 0),
      };
    }),
    ...(usage(r.usageMetadata) ? { usage: usage(r.usageMetadata) } : {}),
  };
}

/**
 * Gemini's `streamGenerateContent?alt=sse` events (each a partial GenerateContentResponse) as
 * OpenAI chunks: each candidate's text as content of its choice, each function call whole as a
 * tool call, the last usage at the end.
 */
export class GeminiStream implements StreamTranslator {
  private readonly base: Json;
  private usage: Json | undefined;
  private readonly started = new Set<number>();
  private readonly toolCount = new Map<number, number>();

  constructor(model: unknown) {
    this.base = { id: `gemini-${Date.now().toString(36)}`, created: Math.floor(Date.now() / 1000), model };
  }

  event(_name: string | undefined, r: Json): string {
    if (r.usageMetadata) this.usage = usage(r.usageMetadata);
    if (isObject(r.error))
      return `data: ${JSON.stringify({ error: { message: String(r.error.message ?? 'stream error'), type: errorTypeFor(Number(r.error.code ?? 500)), param: null, code: r.error.status ?? null } })}\n\n`;
    const candidates = Array.isArray(r.candidates) ? r.candidates.filter(isObject) : [];
    let out = '';
    candidates.forEach((c, position) => {
      const index = typeof c.index === 'number' ? c.index : position;
      const ps = candidateParts(c);
      const delta: Json = {};
      if (!this.started.has(index)) {
        this.started.add(index);
        delta.role = 'assistant';
      }
      const text = textOf(ps);
      if (text) delta.content = text;
      const before = this.toolCount.get(index) ?? 0;
      const calls = callsOf(ps, index, before);
      if (calls.length) {
        delta.tool_calls = calls.map((call, k) => ({ index: before + k, ...call }));
        this.toolCount.set(index, before + calls.length);
      }
      const reason = finish(c.finishReason, (this.toolCount.get(index) ?? 0) > 0);
      if (Object.keys(delta).length || reason)
        out += chunkLine(this.base, [{ index, delta, finish_reason: reason }]);
    });
    return out;
  }

  end(): string {
    return (this.usage ? chunkLine(this.base, [], this.usage) : '') + DONE;
  }
}

function geminiError(body: unknown, raw: string, status: number) {
  const err = isObject(body) && isObject(body.error) ? body.error : undefined;
  return {
    message: typeof err?.message === 'string' ? err.message : raw.slice(0, 500),
    type: errorTypeFor(status),
    ...(typeof err?.status === 'string' ? { code: err.status } : {}),
  };
}

/**
 * Google's Gemini API (generateContent and streamGenerateContent). `baseURL` up to and including
 * the version (https://generativelanguage.googleapis.com/v1beta); the variant's `model` is the
 * Gemini model (`gemini-2.5-flash`); the key (apiKeyEnv) goes in `x-goog-api-key`.
 */
export class GeminiProvider implements Provider {
  private readonly http: UpstreamHttp;

  constructor(
    readonly name: string,
    config: UpstreamConfig,
  ) {
    const key = apiKey(config);
    this.http = new UpstreamHttp(config, key ? { 'x-goog-api-key': key } : {});
  }

  async chatCompletions(body: Json, signal: AbortSignal): Promise<UpstreamResponse> {
    const model = encodeURIComponent(String(body.model));
    const stream = body.stream === true;
    const path = stream
      ? `/models/${model}:streamGenerateContent?alt=sse`
      : `/models/${model}:generateContent`;
    const res = await this.http.request('POST', path, toGeminiRequest(body), signal);
    return translateResponse(`upstream "${this.name}"`, res, {
      completion: (r) => fromGeminiResponse(r, body.model),
      stream: () => new GeminiStream(body.model),
      error: geminiError,
    });
  }

  close(): Promise<void> {
    return this.http.close();
  }
}

export function createGeminiProvider(name: string, config: UpstreamConfig): Provider {
  return new GeminiProvider(name, config);
}
