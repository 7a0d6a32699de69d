import { randomBytes } from 'node:crypto';
import {
  type ChatCompletionChunkLike,
  type ChatMessage,
  type ChatStreamAssembler,
  InteractionInput,
  type ParsedInteraction,
  RatchetError,
  type Usage,
} from '@ratchet/core';
import { z } from 'zod';

/**
 * OpenAI's Responses API (`POST /v1/responses`). To an upstream whose provider speaks it (OpenAI,
 * Azure) it is proxied as it is, and read for the log (`nativeOutputMessage`, `nativeUsage`,
 * `ResponsesStreamLog`); to any other it is translated to and from chat completions, so any
 * OpenAI-compatible upstream serves it. What is translated: `input` (text, or message, function
 * call and function call output items), `instructions`, function tools and `tool_choice`,
 * `text.format` (json_schema, json_object), `max_output_tokens` and the sampling parameters;
 * the answer as a `response` object, or streamed as its events. What cannot be translated (built-in
 * tools; `previous_response_id`, which needs the upstream to hold the conversation) is a 400
 * naming the field.
 */

const TextPart = z.looseObject({
  type: z.enum(['input_text', 'output_text', 'text']),
  text: z.string(),
});

const MessageItem = z.looseObject({
  type: z.literal('message').optional(),
  role: z.enum(['user', 'assistant', 'system', 'developer']),
  content: z.union([z.string(), z.array(TextPart)]),
});

const FunctionCallItem = z.looseObject({
  type: z.literal('function_call'),
  call_id: z.string().min(1).max(200),
  name: z.string().min(1).max(200),
  arguments: z.string(),
});

const FunctionCallOutputItem = z.looseObject({
  type: z.literal('function_call_output'),
  call_id: z.string().min(1).max(200),
  output: z.string(),
});

const InputItem = z.union([MessageItem, FunctionCallItem, FunctionCallOutputItem]);

const FunctionTool = z.looseObject({
  type: z.literal('function'),
  name: z.string().min(1).max(200),
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});

/** A tool the upstream runs itself (`web_search`, `file_search`, ...): passed on as it is. */
const BuiltInTool = z.looseObject({
  type: z
    .string()
    .min(1)
    .max(100)
    .refine((t) => t !== 'function', 'a function tool needs a name'),
});

const TextFormat = z.union([
  z.looseObject({ type: z.literal('text') }),
  z.looseObject({ type: z.literal('json_object') }),
  z.looseObject({
    type: z.literal('json_schema'),
    name: z.string().min(1).max(200),
    schema: z.record(z.string(), z.unknown()),
    description: z.string().optional(),
    strict: z.boolean().nullish(),
  }),
]);

/** What the gateway reads of a Responses request; the listed sampling fields are passed on. */
export const ResponsesRequest = z.looseObject({
  model: InteractionInput.shape.model,
  input: z.union([z.string(), z.array(InputItem).min(1)]),
  instructions: z.string().nullish(),
  // Built-in tools (web search, file search, ...) only reach an upstream that speaks Responses:
  // `translatableTools` refuses them for the others.
  tools: z
    .array(z.union([FunctionTool, BuiltInTool]))
    .max(128)
    .optional(),
  tool_choice: z
    .union([
      z.enum(['auto', 'none', 'required']),
      z.looseObject({ type: z.literal('function'), name: z.string().min(1).max(200) }),
    ])
    .optional(),
  text: z.looseObject({ format: TextFormat.optional() }).optional(),
  max_output_tokens: z.number().int().positive().nullish(),
  temperature: z.number().nullish(),
  top_p: z.number().nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  stream: z.boolean().optional(),
  user: InteractionInput.shape.userId,
  // An id, looked up in the database to link the turn: visible ASCII only (OpenAI's are `resp_…`).
  previous_response_id: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[\x21-\x7e]+$/, 'an id of visible ASCII characters')
    .nullish(),
  store: z.boolean().nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
});
export type ResponsesRequest = z.output<typeof ResponsesRequest>;

function partsText(content: string | { text: string }[]): string {
  return typeof content === 'string' ? content : content.map((p) => p.text).join('');
}

/** The chat messages a Responses request stands for: instructions first, then its items in order. */
export function responsesMessages(body: ResponsesRequest): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (body.instructions) messages.push({ role: 'system', content: body.instructions });
  if (typeof body.input === 'string') {
    messages.push({ role: 'user', content: body.input });
    return messages;
  }
  for (const item of body.input) {
    if (item.type === 'function_call') {
      const call = {
        id: item.call_id,
        type: 'function',
        function: { name: item.name, arguments: item.arguments },
      };
      const last = messages.at(-1);
      // Consecutive calls are one assistant turn with several tool calls, as chat completions has them.
      if (last?.role === 'assistant' && Array.isArray(last.tool_calls) && !last.content)
        (last.tool_calls as unknown[]).push(call);
      else messages.push({ role: 'assistant', content: null, tool_calls: [call] });
    } else if (item.type === 'function_call_output') {
      messages.push({ role: 'tool', tool_call_id: item.call_id, content: item.output });
    } else {
      messages.push({ role: item.role, content: partsText(item.content) });
    }
  }
  return messages;
}

type FunctionTool = z.output<typeof FunctionTool>;

/** The function tools, or a 400 naming the first built-in tool: chat completions has no form for it. */
function translatableTools(tools: ResponsesRequest['tools']): FunctionTool[] | undefined {
  const builtIn = tools?.findIndex((t) => t.type !== 'function') ?? -1;
  if (builtIn >= 0)
    throw new RatchetError(
      'invalid_request',
      `tools.${builtIn}.type: built-in tools need an upstream that speaks the Responses API (provider openai or azure)`,
      `tools.${builtIn}.type`,
    );
  return tools as FunctionTool[] | undefined;
}

/** The chat completions body for the upstream. */
export function responsesToChat(body: ResponsesRequest, model: string): Record<string, unknown> {
  if (body.previous_response_id)
    throw new RatchetError(
      'invalid_request',
      "previous_response_id: this model's upstream does not speak the Responses API, so it holds no conversation; send the conversation as input items",
      'previous_response_id',
    );
  const chat: Record<string, unknown> = { model, messages: responsesMessages(body) };
  const tools = translatableTools(body.tools);
  if (tools?.length)
    chat.tools = tools.map((t) => ({
      type: 'function',
      function: {
        name: t.name,
        ...(t.description ? { description: t.description } : {}),
        ...(t.parameters ? { parameters: t.parameters } : {}),
        ...(typeof t.strict === 'boolean' ? { strict: t.strict } : {}),
      },
    }));
  if (body.tool_choice !== undefined)
    chat.tool_choice =
      typeof body.tool_choice === 'string'
        ? body.tool_choice
        : { type: 'function', function: { name: body.tool_choice.name } };
  const format = body.text?.format;
  if (format?.type === 'json_object') chat.response_format = { type: 'json_object' };
  if (format?.type === 'json_schema')
    chat.response_format = {
      type: 'json_schema',
      json_schema: {
        name: format.name,
        schema: format.schema,
        ...(format.description ? { description: format.description } : {}),
        ...(typeof format.strict === 'boolean' ? { strict: format.strict } : {}),
      },
    };
  if (body.max_output_tokens != null) chat.max_tokens = body.max_output_tokens;
  for (const key of ['temperature', 'top_p', 'parallel_tool_calls', 'user'] as const)
    if (body[key] != null) chat[key] = body[key];
  if (body.stream) {
    chat.stream = true;
    chat.stream_options = { include_usage: true };
  }
  return chat;
}

/** Ids of the Responses API's shape (`resp_…`, `msg_…`, `fc_…`). */
function itemId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString('hex')}`;
}

interface ToolCallLike {
  id?: string;
  function?: { name?: string; arguments?: string };
}

type OutputItem = Record<string, unknown>;

function messageItem(id: string, text: string, status: string): OutputItem {
  return {
    type: 'message',
    id,
    status,
    role: 'assistant',
    content: [{ type: 'output_text', text, annotations: [], logprobs: [] }],
  };
}

function functionCallItem(id: string, call: ToolCallLike, status: string): OutputItem {
  return {
    type: 'function_call',
    id,
    call_id: call.id ?? id,
    name: call.function?.name ?? '',
    arguments: call.function?.arguments ?? '',
    status,
  };
}

/** An answer's output items: its text (if any) as a message, then one item per tool call. */
export function outputItems(message: ChatMessage): OutputItem[] {
  const items: OutputItem[] = [];
  const text = typeof message.content === 'string' ? message.content : '';
  const calls = (Array.isArray(message.tool_calls) ? message.tool_calls : []) as ToolCallLike[];
  if (text || calls.length === 0) items.push(messageItem(itemId('msg'), text, 'completed'));
  for (const call of calls) items.push(functionCallItem(itemId('fc'), call, 'completed'));
  return items;
}

function responsesUsage(usage: Usage | undefined): Record<string, unknown> | null {
  if (!usage) return null;
  const input = usage.inputTokens ?? 0;
  const output = usage.outputTokens ?? 0;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: usage.totalTokens ?? input + output,
  };
}

/** A `response` object with the request's settings echoed, as the Responses API returns it. */
export function responseObject(
  id: string,
  body: ResponsesRequest,
  model: string,
  createdAt: number,
  fields: { status: string; output: OutputItem[]; usage?: Usage | undefined },
): Record<string, unknown> {
  return {
    id,
    object: 'response',
    created_at: Math.floor(createdAt / 1000),
    status: fields.status,
    error: null,
    incomplete_details: null,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    model,
    output: fields.output,
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: null,
    temperature: body.temperature ?? null,
    text: body.text ?? { format: { type: 'text' } },
    tool_choice: body.tool_choice ?? 'auto',
    tools: body.tools ?? [],
    top_p: body.top_p ?? null,
    metadata: body.metadata ?? {},
    usage: responsesUsage(fields.usage),
  };
}

export function newResponseId(): string {
  return itemId('resp');
}

/**
 * Turns a streamed chat completion (choice 0) into the Responses API's events as chunks arrive:
 * `response.created`, then per output item `output_item.added`, its deltas, its `.done` events
 * and `output_item.done`, and `response.completed` with the whole response (usage included) at
 * the end. The same assembler as every other stream rebuilds the answer for the log.
 */
export class ResponsesEventWriter {
  private sequence = 0;
  private message: { id: string; index: number; text: string } | undefined;
  private readonly calls = new Map<number, { id: string; index: number }>();
  private outputs = 0;

  constructor(
    /** The stream's assembler, which has taken each chunk before `chunk` is called with it. */
    readonly assembler: ChatStreamAssembler,
    private readonly id: string,
    private readonly body: ResponsesRequest,
    private readonly model: string,
    private readonly createdAt: number,
  ) {}

  private event(type: string, fields: Record<string, unknown>): string {
    const payload = { type, sequence_number: this.sequence++, ...fields };
    return `event: ${type}\ndata: ${JSON.stringify(payload)}\n\n`;
  }

  private response(status: string, output: OutputItem[]): Record<string, unknown> {
    return responseObject(this.id, this.body, this.model, this.createdAt, {
      status,
      output,
      usage: status === 'completed' ? this.assembler.usage : undefined,
    });
  }

  start(): string {
    return (
      this.event('response.created', { response: this.response('in_progress', []) }) +
      this.event('response.in_progress', { response: this.response('in_progress', []) })
    );
  }

  /** The events one chat chunk stands for. */
  chunk(chunk: ChatCompletionChunkLike): string {
    let out = '';
    const choice = chunk.choices?.find((c) => (c?.index ?? 0) === 0);
    const delta = choice?.delta;
    if (!delta) return out;
    if (typeof delta.content === 'string' && delta.content !== '') {
      if (!this.message) {
        this.message = { id: itemId('msg'), index: this.outputs++, text: '' };
        out += this.event('response.output_item.added', {
          output_index: this.message.index,
          item: { ...messageItem(this.message.id, '', 'in_progress'), content: [] },
        });
        out += this.event('response.content_part.added', {
          item_id: this.message.id,
          output_index: this.message.index,
          content_index: 0,
          part: { type: 'output_text', text: '', annotations: [], logprobs: [] },
        });
      }
      this.message.text += delta.content;
      out += this.event('response.output_text.delta', {
        item_id: this.message.id,
        output_index: this.message.index,
        content_index: 0,
        delta: delta.content,
        logprobs: [],
      });
    }
    for (const piece of Array.isArray(delta.tool_calls) ? delta.tool_calls : []) {
      const key = Number.isSafeInteger(piece?.index) ? (piece.index as number) : 0;
      let call = this.calls.get(key);
      if (!call) {
        call = { id: itemId('fc'), index: this.outputs++ };
        this.calls.set(key, call);
        out += this.event('response.output_item.added', {
          output_index: call.index,
          item: functionCallItem(
            call.id,
            { id: piece?.id, function: { name: piece?.function?.name ?? '' } },
            'in_progress',
          ),
        });
      }
      const args = piece?.function?.arguments;
      if (typeof args === 'string' && args !== '')
        out += this.event('response.function_call_arguments.delta', {
          item_id: call.id,
          output_index: call.index,
          delta: args,
        });
    }
    return out;
  }

  /** The closing events: each item done, then `response.completed` with every item and usage. */
  finish(): string {
    const message = this.assembler.message();
    const calls = (Array.isArray(message.tool_calls) ? message.tool_calls : []) as ToolCallLike[];
    const items: { index: number; item: OutputItem }[] = [];
    let out = '';
    if (this.message) {
      const item = messageItem(this.message.id, this.message.text, 'completed');
      const part = { type: 'output_text', text: this.message.text, annotations: [], logprobs: [] };
      const at = { item_id: this.message.id, output_index: this.message.index, content_index: 0 };
      out += this.event('response.output_text.done', { ...at, text: this.message.text, logprobs: [] });
      out += this.event('response.content_part.done', { ...at, part });
      out += this.event('response.output_item.done', { output_index: this.message.index, item });
      items.push({ index: this.message.index, item });
    }
    for (const [key, call] of this.calls) {
      const item = functionCallItem(call.id, calls[key] ?? {}, 'completed');
      out += this.event('response.function_call_arguments.done', {
        item_id: call.id,
        output_index: call.index,
        arguments: item.arguments,
      });
      out += this.event('response.output_item.done', { output_index: call.index, item });
      items.push({ index: call.index, item });
    }
    const output = items.sort((a, b) => a.index - b.index).map((i) => i.item);
    return out + this.event('response.completed', { response: this.response('completed', output) });
  }
}

/** A number the log can store as a token count (an upstream's answer is not trusted). */
function count(value: unknown): number | undefined {
  return Number.isSafeInteger(value) && (value as number) >= 0 ? (value as number) : undefined;
}

/** A Responses API `usage` (input, output and total tokens) as the log's usage. */
export function nativeUsage(usage: unknown): Usage | undefined {
  if (typeof usage !== 'object' || usage === null) return undefined;
  const u = usage as Record<string, unknown>;
  const out: Usage = {};
  const input = count(u.input_tokens);
  const output = count(u.output_tokens);
  const total = count(u.total_tokens);
  if (input !== undefined) out.inputTokens = input;
  if (output !== undefined) out.outputTokens = output;
  if (total !== undefined) out.totalTokens = total;
  return out;
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

/**
 * A Responses answer's output items as the one assistant message the log stores, the way a
 * translated call's answer is stored: the message items' text (output text and refusals),
 * and each function call as a tool call (`content: null` when it only calls tools). Other items
 * (reasoning, built-in tool calls) are not a chat message's; they stay in the upstream's answer.
 */
export function nativeOutputMessage(output: unknown): ChatMessage {
  let text = '';
  const calls: { id: string; type: 'function'; function: { name: string; arguments: string } }[] = [];
  for (const raw of Array.isArray(output) ? output : []) {
    const item = record(raw);
    if (item?.type === 'message' && Array.isArray(item.content)) {
      for (const part of item.content) {
        const p = record(part);
        if (p?.type === 'output_text' && typeof p.text === 'string') text += p.text;
        if (p?.type === 'refusal' && typeof p.refusal === 'string') text += p.refusal;
      }
    } else if (item?.type === 'function_call') {
      calls.push({
        id: String(item.call_id ?? item.id ?? ''),
        type: 'function',
        function: {
          name: typeof item.name === 'string' ? item.name : '',
          arguments: typeof item.arguments === 'string' ? item.arguments : '',
        },
      });
    }
  }
  if (calls.length === 0) return { role: 'assistant', content: text };
  return { role: 'assistant', content: text || null, tool_calls: calls };
}

/**
 * Reads a native Responses stream for the log while its bytes are relayed untouched: the
 * response's id (from `response.created`), the final response (`response.completed`,
 * `.incomplete` or `.failed`) with its output and usage, and, for a stream cut short, the
 * output so far from the items and deltas seen. An `error` event or a failed response makes the
 * call's status `error`.
 */
export class ResponsesStreamLog {
  private buffer = '';
  responseId: string | undefined;
  private final: Record<string, unknown> | undefined;
  private readonly items = new Map<number, Record<string, unknown>>();
  private readonly texts = new Map<number, string>();
  private readonly args = new Map<number, string>();
  private failure: string | undefined;

  push(chunk: Buffer): void {
    this.buffer += chunk.toString('utf8');
    const events = this.buffer.split(/\r?\n\r?\n/);
    this.buffer = events.pop() ?? '';
    for (const e of events) this.event(e);
  }

  end(): void {
    if (this.buffer.trim()) this.event(this.buffer);
    this.buffer = '';
  }

  private event(block: string): void {
    const data = block
      .split(/\r?\n/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).trimStart())
      .join('\n');
    if (!data || data === '[DONE]') return;
    let parsed: Record<string, unknown> | undefined;
    try {
      parsed = record(JSON.parse(data));
    } catch {
      return;
    }
    if (parsed) this.take(parsed);
  }

  private take(e: Record<string, unknown>): void {
    const index = Number.isSafeInteger(e.output_index) ? (e.output_index as number) : 0;
    const response = record(e.response);
    switch (e.type) {
      case 'response.created':
      case 'response.in_progress':
        if (typeof response?.id === 'string') this.responseId ??= response.id;
        break;
      case 'response.output_item.added':
      case 'response.output_item.done':
        if (record(e.item)) this.items.set(index, record(e.item)!);
        break;
      case 'response.output_text.delta':
        if (typeof e.delta === 'string') this.texts.set(index, (this.texts.get(index) ?? '') + e.delta);
        break;
      case 'response.function_call_arguments.delta':
        if (typeof e.delta === 'string') this.args.set(index, (this.args.get(index) ?? '') + e.delta);
        break;
      case 'response.completed':
      case 'response.incomplete':
      case 'response.failed':
        this.final = response;
        if (typeof response?.id === 'string') this.responseId ??= response.id;
        if (e.type === 'response.failed')
          this.failure ??= String(record(response?.error)?.message ?? 'the response failed');
        break;
      case 'error':
        this.failure ??= String(e.message ?? record(e.error)?.message ?? 'stream error');
        break;
    }
  }

  /** The answer so far: the final response's output, else what the items and deltas built. */
  message(): ChatMessage {
    if (this.final) return nativeOutputMessage(this.final.output);
    const output = [...this.items.entries()]
      .sort(([a], [b]) => a - b)
      .map(([index, item]) => {
        if (item.type === 'message' && !(Array.isArray(item.content) && item.content.length))
          return { ...item, content: [{ type: 'output_text', text: this.texts.get(index) ?? '' }] };
        if (item.type === 'function_call' && !item.arguments)
          return { ...item, arguments: this.args.get(index) ?? '' };
        return item;
      });
    return nativeOutputMessage(output);
  }

  get usage(): Usage | undefined {
    return nativeUsage(this.final?.usage);
  }

  /** `status: error` with the upstream's message, when the stream failed. */
  extra(): Partial<ParsedInteraction> {
    return this.failure === undefined
      ? {}
      : { status: 'error', error: `upstream error in the stream: ${this.failure.slice(0, 2000)}` };
  }
}
