import { z } from 'zod';
import { FeedbackInput } from '../feedback-kinds.js';
import { InteractionInput } from './interaction.js';

/**
 * One line of Ratchet's JSONL exchange format (`ratchet export` / `ratchet import`): an
 * interaction with its feedback history. Feedback items may leave out `interactionId`; they rate
 * the line's interaction.
 */
export const ExchangeLine = InteractionInput.extend({
  feedback: z.array(z.record(z.string(), z.unknown())).max(100_000).optional(),
}).transform((line, ctx) => {
  const { feedback = [], ...interaction } = line;
  const id = interaction.id;
  if (feedback.length > 0 && id === undefined) {
    ctx.addIssue({ code: 'custom', path: ['id'], message: 'a line with feedback needs an interaction id' });
    return z.NEVER;
  }
  const parsed = feedback.map((f, i) => {
    const result = FeedbackInput.safeParse({ interactionId: id, ...f });
    if (!result.success) {
      const issue = result.error.issues[0]!;
      ctx.addIssue({ code: 'custom', path: ['feedback', i, ...issue.path], message: issue.message });
    }
    return result.data;
  });
  return { interaction, feedback: parsed.filter((f) => f !== undefined) };
});
export type ExchangeLine = z.output<typeof ExchangeLine>;
