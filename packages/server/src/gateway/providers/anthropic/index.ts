import type { StopReason } from '@anthropic-ai/sdk/resources/messages';
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
  type Translation,
  translateResponse,
} from '../translate.js';
import type { Provider, UpstreamResponse } from '../types.js';

type Json = Record<string, unknown>;

/** The API version this translation follows (https://docs.anthropic.com/en/api/versioning). */
export const ANTHROPIC_VERSION = '2023-06-01';
/** Anthropic requires `max_tokens`; OpenAI clients often send none. */
const DEFAULT_MAX_TOKENS = 4096;

/**
 * OpenAI's `finish_reason` for each Anthropic `stop_reason`, every one the official SDK's types
 * list (a new one fails tsc until it is mapped here).
 */
const finishReasons: Record<StopReason, OpenAI.Chat.ChatCompletion.Choice['finish_reason']> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  tool_use: 'tool_calls',
  pause_turn: 'stop',
  refusal: 'content_filter',
};

function finishReason(stop: unknown): string | null {
  if (typeof stop !== 'string') return null;
  return Object.hasOwn(finishReasons, stop) ? finishReasons[stop as StopReason] : 'stop';
}

/** OpenAI message content as Anthropic content blocks (text and base64 or URL images). */
function blocks(content: unknown): Json[] {
  return contentParts(content).map((part, i) => {
    if (part.type === 'text') return { type: 'text', text: part.text };
    const url = isObject(part.image_url) ? part.image_url.url : undefined;
    if (part.type === 'image_url' && typeof url === 'string') {
      const data = dataUrl(url);
      return data
        ? { type: 'image', source: { type: 'base64', media_type: data.mediaType, data: data.data } }
        : { type: 'image', source: { type: 'url', url } };
    }
    throw new RatchetError(
      'invalid_request',
      `content part of type "${String(part.type)}" has no Anthropic form`,
      `messages.content.${i}`,
    );
  });
}

/** OpenAI's messages as Anthropic's `system` and alternating user/assistant `messages`. */
function messages(list: Json[]): { system?: string; messages: Json[] } {
  const system: string[] = [];
  const out: Json[] = [];
  // Consecutive tool results are one user turn in Anthropic's format.
  const push = (role: string, content: Json[]) => {
    const last = out.at(-1);
    if (last && last.role === role && role === 'user') (last.content as Json[]).push(...content);
    else out.push({ role, content });
  };
  for (const m of list) {
    if (m.role === 'system' || m.role === 'developer') system.push(contentText(m.content));
    else if (m.role === 'tool')
      push('user', [{ type: 'tool_result', tool_use_id: m.tool_call_id, content: contentText(m.content) }]);
    else if (m.role === 'assistant') {
      const calls = Array.isArray(m.tool_calls) ? m.tool_calls.filter(isObject) : [];
      const content = [
        ...blocks(m.content),
        ...calls.map((c) => {
          const fn = isObject(c.function) ? c.function : {};
          return { type: 'tool_use', id: c.id, name: fn.name, input: parseArguments(fn.arguments) };
        }),
      ];
      push('assistant', content);
    } else push('user', blocks(m.content));
  }
  return { ...(system.length ? { system: system.join('\n\n') } : {}), messages: out };
}

function tools(list: unknown): Json[] | undefined {
  if (!Array.isArray(list)) return undefined;
  return list.filter(isObject).map((t) => {
    const fn = isObject(t.function) ? t.function : {};
    return {
      name: fn.name,
      ...(typeof fn.description === 'string' ? { description: fn.description } : {}),
      input_schema: isObject(fn.parameters) ? fn.parameters : { type: 'object', properties: {} },
    };
  });
}

function toolChoice(choice: unknown): Json | undefined {
  if (choice === 'auto') return { type: 'auto' };
  if (choice === 'required') return { type: 'any' };
  if (choice === 'none') return { type: 'none' };
  if (isObject(choice) && isObject(choice.function)) return { type: 'tool', name: choice.function.name };
  return undefined;
}

/** An OpenAI chat request as an Anthropic Messages request (https://docs.anthropic.com/en/api/messages). */
export function toAnthropicRequest(body: Json): Json {
  if (typeof body.n === 'number' && body.n > 1)
    throw new RatchetError('invalid_request', 'n: Anthropic answers one choice per call', 'n');
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_MAX_TOKENS;
  const user = typeof body.user === 'string' ? body.user : undefined;
  const request: Json = {
    model: body.model,
    max_tokens: maxTokens,
    ...messages((body.messages as Json[]) ?? []),
    ...(body.temperature !== undefined ? { temperature: body.temperature } : {}),
    ...(body.top_p !== undefined ? { top_p: body.top_p } : {}),
    ...(stopList(body.stop) ? { stop_sequences: stopList(body.stop) } : {}),
    ...(tools(body.tools) ? { tools: tools(body.tools) } : {}),
    ...(toolChoice(body.tool_choice) ? { tool_choice: toolChoice(body.tool_choice) } : {}),
    ...(user ? { metadata: { user_id: user } } : {}),
    ...(body.stream === true ? { stream: true } : {}),
  };
  return request;
}

function usage(u: unknown): Json | undefined {
  if (!isObject(u)) return undefined;
  const prompt =
    Number(u.input_tokens ?? 0) +
    Number(u.cache_read_input_tokens ?? 0) +
    Number(u.cache_creation_input_tokens ?? 0);
  const completion = Number(u.output_tokens ?? 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** An Anthropic Message as an OpenAI chat completion. */
export function fromAnthropicMessage(m: Json): Json {
  const content = Array.isArray(m.content) ? m.content.filter(isObject) : [];
  const text = content
    .filter((b) => b.type === 'text')
    .map((b) => String(b.text ?? ''))
    .join('');
  const calls = content
    .filter((b) => b.type === 'tool_use')
    .map((b) => ({
      id: b.id,
      type: 'function',
      function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) },
    }));
  return {
    id: m.id,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: m.model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: calls.length && !text ? null : text,
          ...(calls.length ? { tool_calls: calls } : {}),
        },
        finish_reason: finishReason(m.stop_reason),
      },
    ],
    ...(usage(m.usage) ? { usage: usage(m.usage) } : {}),
  };
}

/**
 * Anthropic's stream events (message_start, content_block_start/delta/stop, message_delta,
 * message_stop, ping, error) as OpenAI chunks: text deltas as content, tool_use blocks as
 * tool calls numbered in order, the stop reason as finish_reason, usage at the end.
 */
export class AnthropicStream implements StreamTranslator {
  private base: Json = { id: '', created: Math.floor(Date.now() / 1000), model: '' };
  private input: Json = {};
  private output = 0;
  /** Content block index -> tool call index. */
  private readonly toolIndex = new Map<number, number>();

  event(_name: string | undefined, e: Json): string {
    const delta = (d: Json, finish: string | null = null) =>
      chunkLine(this.base, [{ index: 0, delta: d, finish_reason: finish }]);
    switch (e.type) {
      case 'message_start': {
        const m = isObject(e.message) ? e.message : {};
        this.base = { ...this.base, id: m.id, model: m.model };
        this.input = isObject(m.usage) ? m.usage : {};
        return delta({ role: 'assistant', content: '' });
      }
      case 'content_block_start': {
        const block = isObject(e.content_block) ? e.content_block : {};
        if (block.type !== 'tool_use') return '';
        const index = this.toolIndex.size;
        this.toolIndex.set(Number(e.index), index);
        return delta({
          tool_calls: [
            { index, id: block.id, type: 'function', function: { name: block.name, arguments: '' } },
          ],
        });
      }
      case 'content_block_delta': {
        const d = isObject(e.delta) ? e.delta : {};
        if (d.type === 'text_delta') return delta({ content: d.text });
        if (d.type === 'input_json_delta' && this.toolIndex.has(Number(e.index)))
          return delta({
            tool_calls: [
              { index: this.toolIndex.get(Number(e.index)), function: { arguments: d.partial_json } },
            ],
          });
        return '';
      }
      case 'message_delta': {
        if (isObject(e.usage)) this.output = Number(e.usage.output_tokens ?? this.output);
        const d = isObject(e.delta) ? e.delta : {};
        return d.stop_reason ? delta({}, finishReason(d.stop_reason)) : '';
      }
      case 'error': {
        const err = isObject(e.error) ? e.error : {};
        return `data: ${JSON.stringify({ error: { message: String(err.message ?? 'stream error'), type: String(err.type ?? 'server_error'), param: null, code: null } })}\n\n`;
      }
      default:
        return '';
    }
  }

  end(): string {
    const u = usage({ ...this.input, output_tokens: this.output });
    return chunkLine(this.base, [], u) + DONE;
  }
}

const translation: Translation = {
  completion: fromAnthropicMessage,
  stream: () => new AnthropicStream(),
  error: (body, raw, status) => {
    const err = isObject(body) && isObject(body.error) ? body.error : undefined;
    return {
      message: typeof err?.message === 'string' ? err.message : raw.slice(0, 500),
      type: typeof err?.type === 'string' ? err.type : errorTypeFor(status),
    };
  },
  // 529 "overloaded" is Anthropic's own; OpenAI clients and failover treat 503 alike.
  status: (s) => (s === 529 ? 503 : s),
};

/**
 * Anthropic's Messages API. `baseURL` up to and including `/v1` (https://api.anthropic.com/v1);
 * the key (apiKeyEnv) goes in `x-api-key`. The stream's usage is always sent; the gateway strips
 * it when the client did not ask.
 */
export class AnthropicProvider implements Provider {
  private readonly http: UpstreamHttp;

  constructor(
    readonly name: string,
    config: UpstreamConfig,
  ) {
    const key = apiKey(config);
    this.http = new UpstreamHttp(config, {
      'anthropic-version': ANTHROPIC_VERSION,
      ...(key ? { 'x-api-key': key } : {}),
    });
  }

  async chatCompletions(body: Json, signal: AbortSignal): Promise<UpstreamResponse> {
    const res = await this.http.request('POST', '/messages', toAnthropicRequest(body), signal);
    return translateResponse(`upstream "${this.name}"`, res, translation);
  }

  close(): Promise<void> {
    return this.http.close();
  }
}

export function createAnthropicProvider(name: string, config: UpstreamConfig): Provider {
  return new AnthropicProvider(name, config);
}
