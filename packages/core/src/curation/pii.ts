import { z } from 'zod';
import { linearRegExp } from './linear-regexp.js';

export const piiKinds = ['email', 'phone', 'card', 'iban', 'ip', 'secret'] as const;
export type PiiKind = (typeof piiKinds)[number];

export interface PiiFinding {
  kind: PiiKind | string;
  start: number;
  end: number;
}

export const PiiConfig = z.strictObject({
  /** Which built-in detectors run. */
  kinds: z.array(z.enum(piiKinds)).default([...piiKinds]),
  /**
   * Extra patterns (JavaScript regex source) by name, e.g. an internal account-number format.
   * They run on the linear-time engine (see linear-regexp.ts): one it cannot run is refused here.
   */
  custom: z
    .record(
      z.string().regex(/^[a-z][a-z0-9_]*$/),
      z.string().superRefine((source, ctx) => {
        const compiled = linearRegExp(source);
        if (!compiled.ok) ctx.addIssue({ code: 'custom', message: `pattern ${compiled.reason}` });
      }),
    )
    .default({}),
  /** What a finding is replaced with; `{kind}` becomes the upper-cased kind. */
  replacement: z.string().default('[{kind}]'),
});
export type PiiConfig = z.input<typeof PiiConfig>;

/** Luhn checksum: tells card numbers from other long digit runs (order ids, phone numbers). */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return digits.length > 0 && sum % 10 === 0;
}

/** ISO 13616 mod-97 check, so that random capitals-and-digits runs are not taken for IBANs. */
export function ibanValid(candidate: string): boolean {
  const iban = candidate.replace(/\s+/g, '').toUpperCase();
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$/.test(iban)) return false;
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let remainder = 0;
  for (const ch of rearranged) {
    const value = ch >= 'A' ? (ch.charCodeAt(0) - 55).toString() : ch;
    for (const digit of value) remainder = (remainder * 10 + (digit.charCodeAt(0) - 48)) % 97;
  }
  return remainder === 1;
}

function ipv4Valid(s: string): boolean {
  return s.split('.').every((o) => o.length <= 3 && Number(o) <= 255 && !(o.length > 1 && o.startsWith('0')));
}

/**
 * A detector finds candidate spans; `accept` then checks a candidate (a checksum, a digit count).
 *
 * Every detector runs in time linear in the text, which matters because it runs over every
 * interaction and correction a project has, any of them a hostile 100k characters. A regex
 * qualifies when each of its quantifiers is bounded (so an attempt at one position reads a fixed
 * number of characters) or, when unbounded, can only stop at a character it cannot consume (so
 * giving characters back cannot lead to a match, and each retry fails at once), and when no two
 * attempts can rescan the same long run. Where a pattern needed something after an unbounded run
 * from many starting points (an e-mail's domain after its local part, a JWT's dots after its
 * segments, the token after `Bearer` and any amount of space), a scanner visits each run once
 * instead. `curation/pii.perf.test.ts` runs each detector over 100k-character adversarial texts.
 */
interface Detector {
  kind: PiiKind;
  spans: (text: string) => Iterable<[start: number, end: number]>;
  accept?: (match: string) => boolean;
}

function* regexSpans(pattern: RegExp, text: string): Iterable<[number, number]> {
  for (const m of text.matchAll(pattern)) yield [m.index, m.index + m[0].length];
}

const regexDetector = (kind: PiiKind, pattern: RegExp, accept?: (m: string) => boolean): Detector => ({
  kind,
  spans: (text) => regexSpans(pattern, text),
  ...(accept ? { accept } : {}),
});

const isWordCode = (c: number) =>
  (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
const LOCAL_PART = /[A-Za-z0-9._%+-]/;
const DOMAIN_CHAR = /[A-Za-z0-9.-]/;
/** The longest domain with a final `.` and two or more letters, ending at a word boundary. */
const DOMAIN = /^[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b/;

/**
 * E-mail addresses, found from each `@`: the local part is the run of address characters before
 * it (from its first word character, as `\b` would start it), the domain the longest run after it
 * that ends in a dot and letters. Local-part runs end at an `@` and domain runs start after one,
 * so each character is read a bounded number of times.
 */
function* emailSpans(text: string): Iterable<[number, number]> {
  let at = text.indexOf('@');
  let lastEnd = 0;
  while (at >= 0) {
    let start = at;
    // Not back into the previous address: a regex scan resumes where its last match ended.
    while (start > lastEnd && LOCAL_PART.test(text[start - 1]!)) start--;
    while (start < at && !isWordCode(text.charCodeAt(start))) start++;
    let end = at + 1;
    while (end < text.length && DOMAIN_CHAR.test(text[end]!)) end++;
    // One character past the run, so that `\b` sees what follows the domain.
    const domain = start < at ? DOMAIN.exec(text.slice(at + 1, end + 1)) : null;
    if (domain) {
      lastEnd = at + 1 + domain[0].length;
      yield [start, lastEnd];
    }
    at = text.indexOf('@', domain ? lastEnd : at + 1);
  }
}

const JWT_SEGMENT = /[A-Za-z0-9_-]/;
/** The end of the run of JWT segment characters from `i`. */
function segmentEnd(text: string, i: number): number {
  while (i < text.length && JWT_SEGMENT.test(text[i]!)) i++;
  return i;
}

/**
 * JWTs (`eyJ…​.eyJ…​.…`, each segment 8+ characters after its prefix). Every `eyJ` inside one run
 * of segment characters shares that run's end and what follows it, so the first one in a run
 * decides for all of them and the scan moves on past the run.
 */
function* jwtSpans(text: string): Iterable<[number, number]> {
  const starts = /\beyJ/g;
  for (let m = starts.exec(text); m; m = starts.exec(text)) {
    const s = m.index;
    const end1 = segmentEnd(text, s + 3);
    let found: [number, number] | undefined;
    if (end1 - (s + 3) >= 8 && text[end1] === '.' && text.startsWith('eyJ', end1 + 1)) {
      const end2 = segmentEnd(text, end1 + 4);
      if (end2 - (end1 + 4) >= 8 && text[end2] === '.') {
        const end3 = segmentEnd(text, end2 + 1);
        if (end3 - (end2 + 1) >= 8) found = [s, end3];
      }
    }
    if (found) yield found;
    starts.lastIndex = found ? found[1] : end1;
  }
}

/** The token after `Bearer` and its whitespace: the match ends with it (group 1). */
const BEARER = /\bBearer\s+([A-Za-z0-9._~+/-]{20,}=*)/g;
function* bearerSpans(text: string): Iterable<[number, number]> {
  for (const m of text.matchAll(BEARER)) {
    const end = m.index + m[0].length;
    yield [end - m[1]!.length, end];
  }
}

// Order matters: secrets and cards are claimed before the looser phone pattern sees their digits.
const detectors: Detector[] = [
  // Each alternative is a fixed prefix and one run that succeeds as soon as it is long enough.
  regexDetector(
    'secret',
    /\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|rk_(?:sec|pub)_[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35})/g,
  ),
  { kind: 'secret', spans: jwtSpans },
  { kind: 'secret', spans: bearerSpans },
  { kind: 'email', spans: emailSpans },
  regexDetector('iban', /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b/g, ibanValid),
  regexDetector('card', /\b(?:\d[ -]?){12,18}\d\b/g, (m) => luhnValid(m.replace(/\D/g, ''))),
  regexDetector('ip', /\b(?:\d{1,3}\.){3}\d{1,3}\b/g, ipv4Valid),
  // IPv6, full or with `::`. After the `::`, groups are separated by single colons: a pattern
  // where a colon was optional between groups could split one long hex run many ways.
  regexDetector(
    'ip',
    /\b(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}\b|\b(?:[0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4}){0,5}\b/g,
  ),
  regexDetector(
    'phone',
    /(?:(?<![\w+])\+\d{1,3}[\s.-]?)?(?<![\w-])(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?![\w-])/g,
    // A phone number has 7 to 15 digits and, without a +, at least two groups.
    (m) => {
      const digits = m.replace(/\D/g, '').length;
      return digits >= 7 && digits <= 15;
    },
  ),
];

/** Finds PII spans; overlapping findings keep the first claimed (detector order above). */
export function findPii(text: string, config: PiiConfig = {}): PiiFinding[] {
  const c = PiiConfig.parse(config);
  const enabled = new Set<string>(c.kinds);
  const all: Detector[] = [
    ...detectors.filter((d) => enabled.has(d.kind)),
    ...Object.entries(c.custom).map(([kind, source]) => {
      const compiled = linearRegExp(source);
      // PiiConfig.parse refused any pattern that does not compile on the linear engine.
      if (!compiled.ok) throw new Error(`custom PII pattern ${kind}: ${compiled.reason}`);
      return regexDetector(kind as PiiKind, compiled.regexp);
    }),
  ];
  const findings: PiiFinding[] = [];
  // Characters already claimed by a finding. One detector's spans never overlap each other, so
  // checking and marking reads each character a bounded number of times per detector (a list of
  // findings searched per candidate was quadratic on a text with thousands of them).
  const claimed = new Uint8Array(text.length);
  const taken = (s: number, e: number) => {
    for (let i = s; i < e; i++) if (claimed[i]) return true;
    return false;
  };
  for (const d of all) {
    for (const [start, end] of d.spans(text)) {
      if (end === start || taken(start, end)) continue;
      if (d.accept && !d.accept(text.slice(start, end))) continue;
      claimed.fill(1, start, end);
      findings.push({ kind: d.kind, start, end });
    }
  }
  return findings.sort((a, b) => a.start - b.start);
}

/** Replaces every finding with a placeholder naming its kind. */
export function redactPii(text: string, config: PiiConfig = {}): { text: string; findings: PiiFinding[] } {
  const c = PiiConfig.parse(config);
  const findings = findPii(text, c);
  let out = '';
  let at = 0;
  for (const f of findings) {
    out += text.slice(at, f.start) + c.replacement.replace('{kind}', f.kind.toUpperCase());
    at = f.end;
  }
  return { text: out + text.slice(at), findings };
}
