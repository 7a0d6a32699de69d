import { mulberry32 } from '@ratchet/core';

/**
 * A small, seeded sample of a customer-support assistant's traffic and its ratings, so that a
 * new install has something to look at before real traffic arrives.
 */

interface Intent {
  question: string;
  good: string;
  bad: string[];
}

export const supportIntents: Intent[] = [
  {
    question: 'How do I reset my password?',
    good: 'Go to Settings > Security, choose "Reset password" and follow the link we email you. It expires in 30 minutes.',
    bad: [
      'Just make a new account.',
      'Passwords are managed by your bank, please contact them about it and they will surely help you with everything related to your password and also other things.',
    ],
  },
  {
    question: 'Can I get a refund for my last order?',
    good: 'Yes: orders can be refunded within 30 days. Open Orders, pick the order and choose "Request refund"; the money is back in 5 business days.',
    bad: ['No.', 'Refunds are never possible under any circumstances.'],
  },
  {
    question: 'Where is my package?',
    good: 'Open Orders and click "Track": you will see the carrier and the latest scan. Most parcels arrive within 3 business days.',
    bad: [
      'Somewhere.',
      'Packages usually arrive eventually; shipping is a complex process involving many carriers, warehouses and trucks that travel long distances.',
    ],
  },
  {
    question: 'How do I cancel my subscription?',
    good: 'Go to Settings > Billing and choose "Cancel subscription". You keep access until the end of the paid period.',
    bad: ['You cannot cancel.', 'Send us your card number and we will cancel it for you.'],
  },
  {
    question: 'How can I change my delivery address?',
    good: 'Before the order ships, open Orders, choose the order and "Change address". After it ships, ask the carrier to redirect it.',
    bad: ['Addresses are final.', 'Move to the old address.'],
  },
  {
    question: 'Where can I download my invoice?',
    good: 'Open Orders, pick the order and click "Invoice (PDF)". Invoices for subscriptions are under Settings > Billing.',
    bad: ['We do not do invoices.', 'Invoices are sent by post within 6 to 8 weeks.'],
  },
];

const criteriaNames = ['relevance', 'accuracy', 'helpfulness'] as const;
const comments = {
  bad: ['That is wrong.', 'Not helpful at all.', 'Rude answer.', 'This did not answer my question.'],
  good: ['Thanks, that worked!', 'Clear and quick.', 'Exactly what I needed.'],
};

export interface SampleCall {
  userId: string;
  question: string;
  tags: string[];
}

export interface SampleRating {
  kind: 'thumbs' | 'stars' | 'criteria' | 'comment' | 'correction' | 'implicit';
  body: Record<string, unknown>;
}

/** The demo model's answer: right most of the time, otherwise one of the intent's bad answers. */
export function demoAnswer(question: string, rand: () => number): { text: string; good: boolean } {
  const intent = supportIntents.find((i) => i.question === question) ?? supportIntents[0]!;
  if (rand() < 0.45) return { text: intent.good, good: true };
  return { text: intent.bad[Math.floor(rand() * intent.bad.length)]!, good: false };
}

export function sampleCalls(n: number, seed = 7): SampleCall[] {
  const rand = mulberry32(seed);
  return Array.from({ length: n }, () => ({
    userId: `user-${Math.floor(rand() * 60)}`,
    question: supportIntents[Math.floor(rand() * supportIntents.length)]!.question,
    tags: [rand() < 0.3 ? 'mobile' : 'web', ...(rand() < 0.15 ? ['vip'] : [])],
  }));
}

/**
 * What a user does after seeing an answer: most rate nothing; some give thumbs, stars,
 * criteria, comments or corrections, with their own leniency.
 */
export function sampleRatings(
  answer: { good: boolean; question: string },
  userId: string,
  rand: () => number,
): SampleRating[] {
  const leniency = (Number.parseInt(userId.replace(/\D/g, '') || '0', 10) % 5) * 0.1 - 0.2;
  const r = rand();
  const out: SampleRating[] = [];
  const quality = (answer.good ? 0.8 : 0.2) + leniency + (rand() - 0.5) * 0.3;
  if (r < 0.35) out.push({ kind: 'thumbs', body: { value: quality > 0.5 ? 'up' : 'down' } });
  else if (r < 0.5)
    out.push({ kind: 'stars', body: { value: Math.min(5, Math.max(1, Math.round(1 + quality * 4))) } });
  else if (r < 0.58) {
    const scores = Object.fromEntries(
      criteriaNames.map((c) => [
        c,
        Math.min(5, Math.max(1, Math.round(1 + (quality + (rand() - 0.5) * 0.4) * 4))),
      ]),
    );
    out.push({ kind: 'criteria', body: { scores } });
  }
  if (rand() < 0.12) {
    const pool = quality > 0.5 ? comments.good : comments.bad;
    out.push({ kind: 'comment', body: { text: pool[Math.floor(rand() * pool.length)] } });
  }
  if (!answer.good && rand() < 0.08) {
    const intent = supportIntents.find((i) => i.question === answer.question)!;
    out.push({ kind: 'correction', body: { text: intent.good } });
  }
  if (rand() < 0.2)
    out.push({
      kind: 'implicit',
      // Sent from the browser with the public key, which rates only as the user (source user).
      body: { signal: answer.good ? 'copied' : 'regenerated' },
    });
  return out;
}
