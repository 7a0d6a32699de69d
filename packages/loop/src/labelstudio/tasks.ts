import { createHash } from 'node:crypto';
import type { ChatMessage, Interaction } from '@ratchet/core';
import { taskDataKeys } from './config.js';

/** The text of a message: plain content, or the text parts of multi-part content. */
export function messageText(message: ChatMessage): string {
  const { content } = message;
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((part) => (typeof part.text === 'string' ? part.text : `[${part.type}]`)).join('\n');
}

/** A conversation as annotators read it; a lone user turn is shown as it is. */
export function conversationText(messages: readonly ChatMessage[]): string {
  const [only] = messages;
  if (messages.length === 1 && only?.role === 'user') return messageText(only);
  return messages.map((m) => `${m.role}: ${messageText(m)}`).join('\n\n');
}

export interface LabelStudioTaskInput {
  data: Record<string, string>;
}

/** A task to rate one answer; the interaction id rides along so annotations find their way back. */
export function interactionTask(interaction: Interaction): LabelStudioTaskInput {
  return {
    data: {
      [taskDataKeys.interactionId]: interaction.id,
      [taskDataKeys.prompt]: conversationText(interaction.messages),
      [taskDataKeys.answer]: messageText(interaction.output),
      [taskDataKeys.model]: interaction.model,
    },
  };
}

/** A task to compare two answers to the same prompt (shown left and right). */
export function comparisonTask(left: Interaction, right: Interaction): LabelStudioTaskInput {
  return {
    data: {
      ...interactionTask(left).data,
      [taskDataKeys.otherInteractionId]: right.id,
      [taskDataKeys.otherAnswer]: messageText(right.output),
    },
  };
}

/**
 * Pairs of different answers to the same prompt, for pairwise tasks: within each prompt the
 * answers are chained (a-b, b-c, ...) so each is compared without asking for every pair. Which
 * side an answer is shown on follows a hash of the pair, so that no model always sits on the
 * left (annotators favour one side) and a re-push builds the same pairs.
 */
export function comparisonPairs(interactions: readonly Interaction[]): [Interaction, Interaction][] {
  const byPrompt = new Map<string, Interaction[]>();
  for (const i of interactions) {
    const group = byPrompt.get(i.promptHash) ?? [];
    group.push(i);
    byPrompt.set(i.promptHash, group);
  }
  const pairs: [Interaction, Interaction][] = [];
  for (const group of byPrompt.values()) {
    const sorted = [...group].sort((a, b) => (a.id < b.id ? -1 : 1));
    const distinct = sorted.filter(
      (i, k) => sorted.findIndex((j) => messageText(j.output) === messageText(i.output)) === k,
    );
    for (let k = 0; k + 1 < distinct.length; k++) {
      const a = distinct[k]!;
      const b = distinct[k + 1]!;
      const flip = createHash('sha256').update(`${a.id}\u0000${b.id}`).digest()[0]! & 1;
      pairs.push(flip ? [b, a] : [a, b]);
    }
  }
  return pairs;
}

/** Identifies a task's interactions independently of side, to skip tasks pushed before. */
export function taskKey(data: Record<string, unknown>): string | undefined {
  const a = data[taskDataKeys.interactionId];
  if (typeof a !== 'string') return undefined;
  const b = data[taskDataKeys.otherInteractionId];
  return typeof b === 'string' ? [a, b].sort().join('\u0000') : a;
}
