import type { ChatMessage, Usage } from '@ratchet/core';

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
    };
    finish_reason?: string | null;
  }[];
  usage?: OpenAIUsage | null;
}

export interface OpenAIUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
}

interface AssembledToolCall {
  id?: string;
  type?: string;
  function: { name: string; arguments: string };
}

export function toUsage(u: OpenAIUsage | null | undefined): Usage | undefined {
  if (!u) return undefined;
  const usage: Usage = {};
  if (typeof u.prompt_tokens === 'number') usage.inputTokens = u.prompt_tokens;
  if (typeof u.completion_tokens === 'number') usage.outputTokens = u.completion_tokens;
  if (typeof u.total_tokens === 'number') usage.totalTokens = u.total_tokens;
  return usage;
}

/**
 * Rebuilds the assistant's message from a streamed chat completion, chunk by chunk, as the app
 * reads it: the text, tool calls (whose names and arguments arrive in pieces), the finish
 * reason and, when the request asked for it, usage. Only the first choice is kept, as with
 * non-streamed calls.
 */
export class ChatStreamAssembler {
  private content = '';
  private refusal = '';
  private readonly toolCalls: AssembledToolCall[] = [];
  finishReason: string | undefined;
  usage: Usage | undefined;
  responseModel: string | undefined;
  chunks = 0;

  add(chunk: ChatCompletionChunkLike): void {
    this.chunks++;
    if (typeof chunk.model === 'string') this.responseModel = chunk.model;
    if (chunk.usage) this.usage = toUsage(chunk.usage);
    const choice = chunk.choices?.find((c) => (c.index ?? 0) === 0);
    if (!choice) return;
    const delta = choice.delta ?? {};
    if (typeof delta.content === 'string') this.content += delta.content;
    if (typeof delta.refusal === 'string') this.refusal += delta.refusal;
    for (const piece of delta.tool_calls ?? []) {
      const index = piece.index ?? 0;
      this.toolCalls[index] ??= { function: { name: '', arguments: '' } };
      const slot = this.toolCalls[index];
      if (piece.id) slot.id = piece.id;
      if (piece.type) slot.type = piece.type;
      if (piece.function?.name) slot.function.name += piece.function.name;
      if (piece.function?.arguments) slot.function.arguments += piece.function.arguments;
    }
    if (typeof choice.finish_reason === 'string') this.finishReason = choice.finish_reason;
  }

  message(): ChatMessage {
    const message: ChatMessage = { role: 'assistant', content: this.content };
    const toolCalls = this.toolCalls.filter(Boolean);
    if (toolCalls.length > 0) message.tool_calls = toolCalls;
    if (this.refusal) message.refusal = this.refusal;
    return message;
  }
}
