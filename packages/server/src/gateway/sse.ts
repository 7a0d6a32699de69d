import type { ChatMessage, Usage } from '@ratchet/core';

interface ToolCallDelta {
  index?: number;
  id?: string;
  type?: string;
  function?: { name?: string; arguments?: string };
}

/**
 * Rebuilds the assistant message and usage from an OpenAI-style SSE stream as it passes through,
 * without holding up the bytes on their way to the client.
 */
export class StreamAccumulator {
  private pending = '';
  private content = '';
  private readonly toolCalls: {
    id?: string;
    type?: string;
    function: { name: string; arguments: string };
  }[] = [];
  finishReason: string | undefined;
  usage: Usage | undefined;
  responseModel: string | undefined;

  feed(chunk: Buffer | string): void {
    this.pending += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    let newline = this.pending.indexOf('\n');
    while (newline !== -1) {
      const line = this.pending.slice(0, newline).trim();
      this.pending = this.pending.slice(newline + 1);
      if (line.startsWith('data:')) this.onData(line.slice(5).trim());
      newline = this.pending.indexOf('\n');
    }
  }

  private onData(data: string): void {
    if (data === '' || data === '[DONE]') return;
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof event.model === 'string') this.responseModel = event.model;
    const usage = event.usage as Record<string, number> | undefined | null;
    if (usage) this.usage = toUsage(usage);
    const choice = (event.choices as Record<string, unknown>[] | undefined)?.[0];
    if (!choice) return;
    const delta = (choice.delta ?? {}) as { content?: string | null; tool_calls?: ToolCallDelta[] };
    if (typeof delta.content === 'string') this.content += delta.content;
    for (const tc of delta.tool_calls ?? []) {
      const i = tc.index ?? 0;
      this.toolCalls[i] ??= { function: { name: '', arguments: '' } };
      const slot = this.toolCalls[i];
      if (tc.id) slot.id = tc.id;
      if (tc.type) slot.type = tc.type;
      if (tc.function?.name) slot.function.name += tc.function.name;
      if (tc.function?.arguments) slot.function.arguments += tc.function.arguments;
    }
    if (typeof choice.finish_reason === 'string') this.finishReason = choice.finish_reason;
  }

  message(): ChatMessage {
    const msg: ChatMessage = { role: 'assistant', content: this.content };
    if (this.toolCalls.length) msg.tool_calls = this.toolCalls.filter(Boolean);
    return msg;
  }
}

export function toUsage(u: Record<string, number> | undefined): Usage | undefined {
  if (!u) return undefined;
  const usage: Usage = {};
  if (typeof u.prompt_tokens === 'number') usage.inputTokens = u.prompt_tokens;
  if (typeof u.completion_tokens === 'number') usage.outputTokens = u.completion_tokens;
  if (typeof u.total_tokens === 'number') usage.totalTokens = u.total_tokens;
  return usage;
}
