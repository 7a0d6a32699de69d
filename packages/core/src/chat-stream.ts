import type { ChatMessage, Usage } from './schemas/interaction.js';

/** The parts of an OpenAI chat completion chunk the assembler reads. */
export interface ChatCompletionChunkLike {
  model?: string;
  choices?: {
    index?: number;
    delta?: {
      role?: string | null;
      content?: string | null;
      refusal?: string | null;
      tool_calls?: {
        index?: number;
        id?: string;
        type?: string;
        function?: { name?: string; arguments?: string };
      }[];
    } | null;
    finish_reason?: string | null;
  }[];
  usage?: OpenAIUsage | null;
}

export interface OpenAIUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
}

/** OpenAI's usage object in Ratchet's names. */
export function toUsage(u: OpenAIUsage | null | undefined): Usage | undefined {
  if (!u || typeof u !== 'object') return undefined;
  const usage: Usage = {};
  if (typeof u.prompt_tokens === 'number') usage.inputTokens = u.prompt_tokens;
  if (typeof u.completion_tokens === 'number') usage.outputTokens = u.completion_tokens;
  if (typeof u.total_tokens === 'number') usage.totalTokens = u.total_tokens;
  return usage;
}

interface AssembledToolCall {
  id?: string;
  type?: string;
  function: { name: string; arguments: string };
}

/** One choice of a completion, as logged: choice 0 is the interaction's `output`, others go to `metadata.choices`. */
export interface AssembledChoice {
  index: number;
  message: ChatMessage;
  finishReason?: string;
}

class ChoiceState {
  content: string | null = null;
  refusal = '';
  readonly toolCalls: AssembledToolCall[] = [];
  finishReason: string | undefined;

  message(): ChatMessage {
    const toolCalls = this.toolCalls.filter(Boolean);
    // A non-streamed answer that only calls tools has `content: null`; an empty streamed text is the same answer.
    const content = toolCalls.length > 0 && !this.content ? null : (this.content ?? '');
    const message: ChatMessage = { role: 'assistant', content };
    if (toolCalls.length > 0) message.tool_calls = toolCalls;
    if (this.refusal) message.refusal = this.refusal;
    return message;
  }
}

/**
 * Rebuilds a streamed chat completion chunk by chunk, each choice by its `index` (with `n > 1`
 * the choices' deltas interleave): text, refusal, tool calls (whose names and arguments arrive
 * in pieces, by tool-call index within the choice), finish reasons, usage and the answering
 * model. The one assembler of the SDK (which reads parsed chunks) and the gateway (which reads
 * the SSE bytes through `SseChatStream`), so both log the same thing for the same stream.
 */
export class ChatStreamAssembler {
  private readonly byIndex = new Map<number, ChoiceState>();
  usage: Usage | undefined;
  responseModel: string | undefined;
  chunks = 0;

  add(chunk: ChatCompletionChunkLike): void {
    this.chunks++;
    if (typeof chunk.model === 'string') this.responseModel = chunk.model;
    if (chunk.usage) this.usage = toUsage(chunk.usage);
    if (!Array.isArray(chunk.choices)) return;
    for (const choice of chunk.choices) {
      if (!choice || typeof choice !== 'object') continue;
      const index = Number.isSafeInteger(choice.index) ? (choice.index as number) : 0;
      let state = this.byIndex.get(index);
      if (!state) {
        state = new ChoiceState();
        this.byIndex.set(index, state);
      }
      addDelta(state, choice.delta ?? {});
      if (typeof choice.finish_reason === 'string') state.finishReason = choice.finish_reason;
    }
  }

  /** Every choice seen, by index (choice 0 first); a stream with no choice yet has an empty choice 0. */
  choices(): AssembledChoice[] {
    if (this.byIndex.size === 0) return [{ index: 0, message: new ChoiceState().message() }];
    return [...this.byIndex.entries()]
      .sort(([a], [b]) => a - b)
      .map(([index, state]) => {
        const choice: AssembledChoice = { index, message: state.message() };
        if (state.finishReason) choice.finishReason = state.finishReason;
        return choice;
      });
  }

  /** The first choice's message (choice 0, or the lowest index seen). */
  message(): ChatMessage {
    return this.choices()[0]!.message;
  }

  get finishReason(): string | undefined {
    return this.choices()[0]!.finishReason;
  }
}

function addDelta(
  state: ChoiceState,
  delta: NonNullable<NonNullable<ChatCompletionChunkLike['choices']>[number]['delta']>,
): void {
  if (typeof delta.content === 'string') state.content = (state.content ?? '') + delta.content;
  if (typeof delta.refusal === 'string') state.refusal += delta.refusal;
  if (!Array.isArray(delta.tool_calls)) return;
  for (const piece of delta.tool_calls) {
    if (!piece || typeof piece !== 'object') continue;
    const index =
      Number.isSafeInteger(piece.index) && (piece.index as number) >= 0 ? (piece.index as number) : 0;
    // A hostile stream could name index 1e9; a sparse array of that length would not fit in memory.
    if (index > 10_000) continue;
    state.toolCalls[index] ??= { function: { name: '', arguments: '' } };
    const slot = state.toolCalls[index];
    if (typeof piece.id === 'string') slot.id = piece.id;
    if (typeof piece.type === 'string') slot.type = piece.type;
    if (typeof piece.function?.name === 'string') slot.function.name += piece.function.name;
    if (typeof piece.function?.arguments === 'string') slot.function.arguments += piece.function.arguments;
  }
}

/** A usage-only chunk (`choices: []`), which the upstream sends when asked for `include_usage`. */
function isUsageOnly(chunk: ChatCompletionChunkLike): boolean {
  return Boolean(chunk.usage) && Array.isArray(chunk.choices) && chunk.choices.length === 0;
}

/**
 * Reads an OpenAI-style SSE stream of chat completion chunks as bytes pass through and feeds
 * `assembler`. With `stripUsage` (the gateway asked the upstream for usage the client did not
 * ask for), `push` returns the text to forward without the usage-only event, and with `usage`
 * removed from any other chunk that carries it; otherwise the caller forwards its bytes as they
 * came and ignores what `push` returns.
 */
const USAGE_KEY = new TextEncoder().encode('"usage"');

/** Whether `needle` occurs in `bytes` (core runs in browsers too: no Buffer). */
function containsBytes(bytes: Uint8Array, needle: Uint8Array): boolean {
  const first = needle[0];
  for (
    let i = bytes.indexOf(first!);
    i !== -1 && i <= bytes.length - needle.length;
    i = bytes.indexOf(first!, i + 1)
  ) {
    let j = 1;
    while (j < needle.length && bytes[i + j] === needle[j]) j++;
    if (j === needle.length) return true;
  }
  return false;
}

export class SseChatStream {
  readonly assembler = new ChatStreamAssembler();
  private readonly decoder = new TextDecoder();
  private pending = '';
  private dropBlank = false;

  constructor(
    private readonly stripUsage = false,
    /** Called with each chunk after the assembler took it (e.g. to translate it to other events). */
    private readonly onChunk?: (chunk: ChatCompletionChunkLike) => void,
  ) {}

  /**
   * Whether `push(bytes)` is sure to return `bytes` unchanged, so a relay may send them before the
   * assembler reads them (the first token must not wait for the log's parse): always without
   * `stripUsage`; with it, when they are whole lines (no line left open before or after them),
   * no blank line after a dropped usage event is due, and the text `"usage"` is nowhere in them.
   */
  forwardsUnchanged(bytes: Uint8Array): boolean {
    if (!this.stripUsage) return true;
    return (
      this.pending === '' &&
      !this.dropBlank &&
      bytes[bytes.length - 1] === 0x0a &&
      !containsBytes(bytes, USAGE_KEY)
    );
  }

  push(bytes: Uint8Array | string): string {
    this.pending += typeof bytes === 'string' ? bytes : this.decoder.decode(bytes, { stream: true });
    let out = '';
    let start = 0;
    let newline = this.pending.indexOf('\n', start);
    while (newline !== -1) {
      out += this.line(this.pending.slice(start, newline + 1));
      start = newline + 1;
      newline = this.pending.indexOf('\n', start);
    }
    this.pending = this.pending.slice(start);
    return out;
  }

  /** What is left at the end of the stream (a last line without its newline). */
  end(): string {
    const rest = this.pending + this.decoder.decode();
    this.pending = '';
    return rest ? this.line(rest) : '';
  }

  private line(raw: string): string {
    const text = raw.trim();
    if (text === '') {
      const drop = this.dropBlank;
      this.dropBlank = false;
      return drop ? '' : raw;
    }
    this.dropBlank = false;
    if (!text.startsWith('data:')) return raw;
    const data = text.slice(5).trim();
    if (data === '' || data === '[DONE]') return raw;
    let chunk: ChatCompletionChunkLike;
    try {
      chunk = JSON.parse(data);
    } catch {
      return raw;
    }
    if (!chunk || typeof chunk !== 'object') return raw;
    this.assembler.add(chunk);
    this.onChunk?.(chunk);
    if (!this.stripUsage || !('usage' in chunk)) return raw;
    if (isUsageOnly(chunk)) {
      this.dropBlank = true;
      return '';
    }
    const { usage: _, ...rest } = chunk;
    return `data: ${JSON.stringify(rest)}${raw.endsWith('\r\n') ? '\r\n' : '\n'}`;
  }
}

/**
 * Where a completion's choices after the first are logged: `metadata.choices`, each
 * `{ index, message, finishReason }`, while choice 0 stays the interaction's `output` (so every
 * reader of `output` is unchanged, and a call with `n: 1` logs exactly as before).
 */
export function extraChoicesMetadata(choices: AssembledChoice[]): { choices?: AssembledChoice[] } {
  return choices.length > 1 ? { choices: choices.slice(1) } : {};
}
