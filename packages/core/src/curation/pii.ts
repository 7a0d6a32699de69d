import { z } from 'zod';

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
  /** Extra patterns (JavaScript regex source) by name, e.g. an internal account-number format. */
  custom: z.record(z.string().regex(/^[a-z][a-z0-9_]*$/), z.string()).default({}),
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

interface Detector {
  kind: PiiKind;
  pattern: RegExp;
  accept?: (match: string) => boolean;
}

// Order matters: secrets and cards are claimed before the looser phone pattern sees their digits.
const detectors: Detector[] = [
  {
    kind: 'secret',
    pattern:
      /\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}|rk_(?:sec|pub)_[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})/g,
  },
  { kind: 'secret', pattern: /(?<=\bBearer\s+)[A-Za-z0-9._~+/-]{20,}=*/g },
  { kind: 'email', pattern: /\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b/g },
  {
    kind: 'iban',
    pattern: /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b/g,
    accept: ibanValid,
  },
  { kind: 'card', pattern: /\b(?:\d[ -]?){12,18}\d\b/g, accept: (m) => luhnValid(m.replace(/\D/g, '')) },
  { kind: 'ip', pattern: /\b(?:\d{1,3}\.){3}\d{1,3}\b/g, accept: ipv4Valid },
  {
    kind: 'ip',
    pattern:
      /\b(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}\b|\b(?:[0-9a-fA-F]{1,4}:){1,6}:(?:[0-9a-fA-F]{1,4}:?){1,6}\b/g,
  },
  {
    kind: 'phone',
    pattern:
      /(?:(?<![\w+])\+\d{1,3}[\s.-]?)?(?<![\w-])(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?![\w-])/g,
    // A phone number has 7 to 15 digits and, without a +, at least two groups.
    accept: (m) => {
      const digits = m.replace(/\D/g, '').length;
      return digits >= 7 && digits <= 15;
    },
  },
];

/** Finds PII spans; overlapping findings keep the first claimed (detector order above). */
export function findPii(text: string, config: PiiConfig = {}): PiiFinding[] {
  const c = PiiConfig.parse(config);
  const enabled = new Set<string>(c.kinds);
  const all: Detector[] = [
    ...detectors.filter((d) => enabled.has(d.kind)),
    ...Object.entries(c.custom).map(([kind, source]) => ({
      kind: kind as PiiKind,
      pattern: new RegExp(source, 'g'),
    })),
  ];
  const findings: PiiFinding[] = [];
  const taken = (s: number, e: number) => findings.some((f) => s < f.end && e > f.start);
  for (const d of all) {
    for (const m of text.matchAll(d.pattern)) {
      const start = m.index;
      const end = start + m[0].length;
      if (m[0].length === 0 || taken(start, end)) continue;
      if (d.accept && !d.accept(m[0])) continue;
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
