import { z } from 'zod';
import { mulberry32 } from '../random.js';
import { buildLexicon, type Lexicon } from './lexicon.js';

/**
 * Easy Data Augmentation (Wei & Zou, 2019) for SFT prompts: synonym replacement, random
 * insertion, random swap and random deletion, each touching about `alpha` of the words. Seeded,
 * so a dataset version built twice is the same.
 */
export const EdaConfig = z.strictObject({
  /** Share of words each operation changes. */
  alpha: z.number().min(0).max(0.5).default(0.1),
  /** Augmented variants made per input text. */
  variants: z.number().int().min(1).max(32).default(4),
  operations: z
    .array(z.enum(['synonym', 'insert', 'swap', 'delete']))
    .min(1)
    .default(['synonym', 'insert', 'swap', 'delete']),
  seed: z.number().int().default(1),
});
export type EdaConfig = z.input<typeof EdaConfig>;

const stopWords = new Set(
  'a an the and or but if of to in on at by for with from is are was were be been am i you he she it we they my your our this that these those do does did'.split(
    ' ',
  ),
);

type Op = (words: string[], n: number, rand: () => number, lexicon: Lexicon) => string[];

const pick = <T>(xs: readonly T[], rand: () => number): T => xs[Math.floor(rand() * xs.length)]!;

const synonymReplace: Op = (words, n, rand, lexicon) => {
  const out = [...words];
  const candidates = out
    .map((w, i) => i)
    .filter((i) => !stopWords.has(out[i]!.toLowerCase()) && lexicon.has(out[i]!.toLowerCase()));
  for (let k = 0; k < n && candidates.length; k++) {
    const i = candidates.splice(Math.floor(rand() * candidates.length), 1)[0]!;
    const word = out[i]!;
    const syn = pick(lexicon.get(word.toLowerCase())!, rand);
    out[i] = word[0] === word[0]!.toUpperCase() ? syn[0]!.toUpperCase() + syn.slice(1) : syn;
  }
  return out;
};

const randomInsert: Op = (words, n, rand, lexicon) => {
  const out = [...words];
  const known = words.filter((w) => lexicon.has(w.toLowerCase()));
  for (let k = 0; k < n && known.length; k++)
    out.splice(
      Math.floor(rand() * (out.length + 1)),
      0,
      pick(lexicon.get(pick(known, rand).toLowerCase())!, rand),
    );
  return out;
};

const randomSwap: Op = (words, n, rand) => {
  const out = [...words];
  for (let k = 0; k < n && out.length > 1; k++) {
    const i = Math.floor(rand() * out.length);
    const j = Math.floor(rand() * out.length);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
};

const randomDelete: Op = (words, n, rand) => {
  if (words.length <= 1) return [...words];
  const p = n / words.length;
  const kept = words.filter(() => rand() > p);
  return kept.length ? kept : [pick(words, rand)];
};

const operations: Record<'synonym' | 'insert' | 'swap' | 'delete', Op> = {
  synonym: synonymReplace,
  insert: randomInsert,
  swap: randomSwap,
  delete: randomDelete,
};

/** Distinct augmented variants of `text` (never the text itself), each with the operation used. */
export function augmentWithEda(
  text: string,
  config: EdaConfig = {},
  lexicon: Lexicon = buildLexicon(),
): { text: string; operation: string }[] {
  const c = EdaConfig.parse(config);
  const words = text.split(/\s+/).filter(Boolean);
  if (words.length === 0) return [];
  const rand = mulberry32(c.seed ^ hashString(text));
  const n = Math.max(1, Math.round(c.alpha * words.length));
  const seen = new Set([text]);
  const out: { text: string; operation: string }[] = [];
  for (let attempt = 0; attempt < c.variants * 4 && out.length < c.variants; attempt++) {
    const op = c.operations[attempt % c.operations.length]!;
    const variant = operations[op](words, n, rand, lexicon).join(' ');
    if (!seen.has(variant)) {
      seen.add(variant);
      out.push({ text: variant, operation: op });
    }
  }
  return out;
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
