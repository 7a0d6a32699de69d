/**
 * A small built-in synonym lexicon for EDA on support-style English prompts. Groups are
 * symmetric: every word in a group may replace any other. Extend it per domain through the
 * `lexicon` option rather than editing this list.
 */
export const synonymGroups: string[][] = [
  ['help', 'assist', 'support', 'aid'],
  ['buy', 'purchase', 'order'],
  ['get', 'obtain', 'receive'],
  ['change', 'modify', 'update', 'alter'],
  ['cancel', 'stop', 'end', 'terminate'],
  ['quick', 'fast', 'rapid', 'speedy'],
  ['problem', 'issue', 'trouble', 'difficulty'],
  ['fix', 'repair', 'resolve', 'solve'],
  ['show', 'display', 'present'],
  ['find', 'locate', 'discover'],
  ['send', 'ship', 'dispatch', 'deliver'],
  ['package', 'parcel', 'shipment'],
  ['money', 'funds', 'payment'],
  ['refund', 'reimbursement', 'repayment'],
  ['account', 'profile', 'login'],
  ['password', 'passcode', 'credentials'],
  ['want', 'wish', 'would like', 'need'],
  ['tell', 'inform', 'notify'],
  ['start', 'begin', 'commence'],
  ['question', 'query', 'inquiry'],
  ['answer', 'reply', 'response'],
  ['big', 'large', 'huge'],
  ['small', 'little', 'tiny'],
  ['wrong', 'incorrect', 'mistaken'],
  ['right', 'correct', 'accurate'],
  ['late', 'delayed', 'overdue'],
  ['broken', 'damaged', 'faulty'],
  ['address', 'location'],
  ['price', 'cost', 'charge'],
  ['invoice', 'bill', 'receipt'],
  ['subscription', 'plan', 'membership'],
  ['email', 'mail', 'message'],
  ['phone', 'telephone', 'mobile'],
  ['easy', 'simple', 'straightforward'],
  ['hard', 'difficult', 'tough'],
  ['now', 'immediately', 'right away'],
  ['please', 'kindly'],
  ['thanks', 'thank you', 'cheers'],
  ['can', 'could'],
  ['how', 'in what way'],
];

export type Lexicon = ReadonlyMap<string, readonly string[]>;

export function buildLexicon(groups: readonly (readonly string[])[] = synonymGroups): Lexicon {
  const map = new Map<string, string[]>();
  for (const group of groups) {
    for (const word of group) {
      const others = group.filter((w) => w !== word);
      map.set(word, [...(map.get(word) ?? []), ...others]);
    }
  }
  return map;
}
