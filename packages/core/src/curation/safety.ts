/**
 * Unsafe-content screening. The built-in classifier is a lexicon and pattern set: transparent and
 * dependency-free, meant as a floor. A project plugs a model-based classifier in behind the same
 * interface (e.g. a moderation endpoint or a local classifier served by the worker).
 */

export const safetyCategories = [
  'violence',
  'weapons',
  'self_harm',
  'sexual_minors',
  'hate',
  'illegal_drugs',
  'malware',
  'fraud',
] as const;
export type SafetyCategory = (typeof safetyCategories)[number];

export interface SafetyVerdict {
  unsafe: boolean;
  /** Categories that matched, with the matched text for the curation record. */
  matches: { category: SafetyCategory | string; match: string }[];
}

export interface SafetyClassifier {
  readonly name: string;
  classify(texts: readonly string[]): Promise<SafetyVerdict[]>;
}

const builtInPatterns: Record<SafetyCategory, RegExp[]> = {
  violence: [
    /\bhow (?:do i|to|can i) (?:kill|murder|poison|strangle) (?:a |my |some)?(?:person|people|someone|him|her|them|wife|husband|neighbou?r)\b/i,
    /\b(?:torture|behead) (?:him|her|them|someone)\b/i,
  ],
  weapons: [
    /\bhow (?:do i|to|can i) (?:make|build|assemble) (?:a |an )?(?:bomb|pipe bomb|explosive|ied|molotov|nerve agent|bioweapon)\b/i,
    /\b(?:untraceable|ghost) gun\b/i,
  ],
  self_harm: [
    /\b(?:kill|hurt|cut) (?:myself|yourself)\b/i,
    /\bwant to die\b/i,
    /\bsuicide (?:method|instructions)\b/i,
  ],
  sexual_minors: [
    /\b(?:sexual|explicit|nude)\b[^.]{0,40}\b(?:minor|child|children|underage|kid)s?\b/i,
    /\b(?:minor|child|underage)s?\b[^.]{0,40}\b(?:sexual|explicit|nude)\b/i,
  ],
  hate: [
    /\b(?:all|those) (?:\w+ )?(?:people|immigrants|jews|muslims|christians|women|men) (?:are|should be) (?:vermin|animals|subhuman|exterminated|killed)\b/i,
    /\bsubhuman\b/i,
  ],
  illegal_drugs: [
    /\bhow (?:do i|to|can i) (?:make|cook|synthesi[sz]e) (?:meth|methamphetamine|fentanyl|heroin|crack)\b/i,
  ],
  malware: [
    /\b(?:write|create|build) (?:a |an )?(?:keylogger|ransomware|botnet|rootkit|credential stealer)\b/i,
  ],
  fraud: [
    /\b(?:send|give) (?:me|us) your (?:card number|password|pin|cvv|social security number)\b/i,
    /\bhow (?:do i|to) (?:launder money|forge (?:a )?(?:passport|check|cheque))\b/i,
  ],
};

export function lexiconSafetyClassifier(extra: Partial<Record<string, RegExp[]>> = {}): SafetyClassifier {
  const patterns = Object.entries({ ...builtInPatterns, ...extra }).flatMap(([category, list]) =>
    (list ?? []).map((re) => ({ category, re })),
  );
  return {
    name: 'lexicon',
    async classify(texts) {
      return texts.map((text) => {
        const matches = patterns.flatMap(({ category, re }) => {
          const m = re.exec(text);
          return m ? [{ category, match: m[0] }] : [];
        });
        return { unsafe: matches.length > 0, matches };
      });
    },
  };
}
