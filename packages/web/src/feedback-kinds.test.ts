import { FeedbackInput, feedbackKindRegistry, feedbackKinds } from '@ratchet/core';
import { describe, expect, it } from 'vitest';
import written from './feedback-kinds.json';
import type { WidgetFeedback } from './widget/client.js';

/**
 * The web app takes the feedback kinds from core (feedback-kinds.json, written from
 * packages/core/src/feedback-kinds.ts); what the widget sends must be events core accepts.
 */
describe("the web app's feedback kinds are core's", () => {
  it('the dashboard reads every kind of core, with its label, in order', () => {
    expect(written.kinds).toEqual(
      feedbackKinds.map((kind) => ({ kind, label: feedbackKindRegistry[kind].label })),
    );
  });

  it('every event the widget can send parses as core FeedbackInput', () => {
    // One event of each kind the widget's type allows (the Record makes a new widget kind a gap here).
    const sent: Record<WidgetFeedback['kind'], WidgetFeedback> = {
      thumbs: { kind: 'thumbs', value: 'down' },
      stars: { kind: 'stars', value: 4 },
      criteria: { kind: 'criteria', scores: { accuracy: 5 } },
      comment: { kind: 'comment', text: 'thanks' },
    };
    for (const [kind, event] of Object.entries(sent)) {
      expect(feedbackKinds).toContain(kind);
      const parsed = FeedbackInput.safeParse({ ...event, interactionId: 'i-1', feedbackToken: 't' });
      expect(parsed.success, `${kind}: ${parsed.error?.message}`).toBe(true);
    }
  });
});
