import { type CandidateExample, type CandidateList, splitFeedbackIds, type TextCandidate } from './types.js';

/** A candidate as a table takes it: a TextCandidate with its tags. */
export type TaggedTextCandidate = TextCandidate & { tags: string[] };

/** A Float64Array twice as long, with the first `length` values. */
function grown(a: Float64Array<ArrayBuffer>, length: number): Float64Array<ArrayBuffer> {
  const b = new Float64Array(Math.max(1024, a.length * 2));
  b.set(a.subarray(0, length));
  return b;
}

/**
 * Text candidates as columns: what a build over millions of rated answers holds. A candidate
 * object with its numbers boxed, its feedback ids as an array of strings and its texts took
 * about 560 bytes; here the numbers are typed arrays (outside the JavaScript heap), the feedback
 * ids one string, and a candidate about 250 bytes. `at(i)` makes the candidate object when a
 * builder asks for it, so only the candidates a build keeps become objects, and only while it
 * holds them. Pushed in order; a view (`select`, `withSegments`) shares the columns.
 */
export class CandidateColumns {
  private count = 0;
  private readonly interactionIds: string[] = [];
  private readonly promptHashes: string[] = [];
  private readonly prompts: string[] = [];
  private readonly completions: string[] = [];
  private readonly models: (string | undefined)[] = [];
  private readonly tagLists: string[][] = [];
  /** The feedback ids joined by ',' (ids are the server's: UUIDs, no comma; SQLite reads them so). */
  private readonly feedbackIds: string[] = [];
  private rewards = new Float64Array(1024);
  private lowers = new Float64Array(1024);
  private uppers = new Float64Array(1024);
  private ns = new Float64Array(1024);
  private weights = new Float64Array(1024);
  private createdAts = new Float64Array(1024);

  get length(): number {
    return this.count;
  }

  push(c: TaggedTextCandidate): void {
    const i = this.count;
    if (i === this.rewards.length) {
      this.rewards = grown(this.rewards, i);
      this.lowers = grown(this.lowers, i);
      this.uppers = grown(this.uppers, i);
      this.ns = grown(this.ns, i);
      this.weights = grown(this.weights, i);
      this.createdAts = grown(this.createdAts, i);
    }
    this.interactionIds.push(c.interactionId);
    this.promptHashes.push(c.promptHash);
    this.prompts.push(c.prompt);
    this.completions.push(c.completion);
    this.models.push(c.model);
    this.tagLists.push(c.tags);
    if (c.feedbackIds.some((id) => id.includes(',')))
      throw new Error(`feedback id with a comma: ${c.feedbackIds.find((id) => id.includes(','))}`);
    // Without repeats, as a row's lineage lists them: rows keep this string as it is.
    const ids = c.feedbackIds;
    this.feedbackIds.push((ids.length < 2 ? ids : [...new Set(ids)]).join(','));
    // null as NaN: a reward, an interval end is never NaN.
    this.rewards[i] = c.reward ?? Number.NaN;
    this.lowers[i] = c.lower ?? Number.NaN;
    this.uppers[i] = c.upper ?? Number.NaN;
    this.ns[i] = c.n;
    this.weights[i] = c.weight;
    this.createdAts[i] = c.createdAt;
    this.count++;
  }

  interactionId(i: number): string {
    return this.interactionIds[i]!;
  }
  promptHash(i: number): string {
    return this.promptHashes[i]!;
  }
  tags(i: number): string[] {
    return this.tagLists[i]!;
  }
  reward(i: number): number | null {
    const r = this.rewards[i]!;
    return Number.isNaN(r) ? null : r;
  }
  lower(i: number): number | null {
    const r = this.lowers[i]!;
    return Number.isNaN(r) ? null : r;
  }
  upper(i: number): number | null {
    const r = this.uppers[i]!;
    return Number.isNaN(r) ? null : r;
  }
  createdAt(i: number): number {
    return this.createdAts[i]!;
  }
  feedbackIdsText(i: number): string {
    return this.feedbackIds[i]!;
  }

  /** The i-th candidate as an object (a new one each call), with its segment when given. */
  at(i: number, segment?: string): TaggedTextCandidate {
    const c: TaggedTextCandidate = {
      interactionId: this.interactionIds[i]!,
      promptHash: this.promptHashes[i]!,
      prompt: this.prompts[i]!,
      completion: this.completions[i]!,
      reward: this.reward(i),
      lower: this.lower(i),
      upper: this.upper(i),
      n: this.ns[i]!,
      weight: this.weights[i]!,
      createdAt: this.createdAts[i]!,
      tags: this.tagLists[i]!,
      feedbackIds: splitFeedbackIds(this.feedbackIds[i]!),
    };
    const model = this.models[i];
    if (model !== undefined) c.model = model;
    if (segment !== undefined) c.segment = segment;
    return c;
  }

  /** Every candidate, as a list builders read. */
  all(): CandidateView {
    return new CandidateView(this, null, null);
  }
}

/**
 * Some of a table's candidates (or all), in the table's order, with a segment each when
 * `withSegments` gave them one: what a build reads, as a `CandidateList`.
 */
export class CandidateView implements CandidateList<string, string> {
  constructor(
    private readonly table: CandidateColumns,
    /** Rows of the table, in order; null for every row. */
    private readonly rows: Int32Array | null,
    private readonly segments: (string | undefined)[] | null,
  ) {}

  get length(): number {
    return this.rows ? this.rows.length : this.table.length;
  }
  private row(i: number): number {
    return this.rows ? this.rows[i]! : i;
  }
  interactionId(i: number): string {
    return this.table.interactionId(this.row(i));
  }
  promptHash(i: number): string {
    return this.table.promptHash(this.row(i));
  }
  tags(i: number): string[] {
    return this.table.tags(this.row(i));
  }
  reward(i: number): number | null {
    return this.table.reward(this.row(i));
  }
  lower(i: number): number | null {
    return this.table.lower(this.row(i));
  }
  upper(i: number): number | null {
    return this.table.upper(this.row(i));
  }
  createdAt(i: number): number {
    return this.table.createdAt(this.row(i));
  }
  feedbackIdsText(i: number): string {
    return this.table.feedbackIdsText(this.row(i));
  }
  at(i: number): TaggedTextCandidate {
    return this.table.at(this.row(i), this.segments?.[i]);
  }

  /** The candidates for which `keep` holds. */
  select(keep: (i: number) => boolean): CandidateView {
    const rows: number[] = [];
    const segments: (string | undefined)[] | null = this.segments ? [] : null;
    for (let i = 0; i < this.length; i++)
      if (keep(i)) {
        rows.push(this.row(i));
        segments?.push(this.segments![i]);
      }
    return new CandidateView(this.table, Int32Array.from(rows), segments);
  }

  /** Each candidate's segment: its first tag with the prefix. */
  withSegments(prefix: string): CandidateView {
    const segments = Array.from({ length: this.length }, (_, i) =>
      this.tags(i).find((t) => t.startsWith(prefix)),
    );
    return new CandidateView(this.table, this.rows, segments);
  }

  /** Every candidate as an object, for what reads them all (curation, prompt grouping). */
  toArray(): TaggedTextCandidate[] {
    return Array.from({ length: this.length }, (_, i) => this.at(i));
  }
}

/** An array of candidates as a `CandidateList`. */
export function candidateList<C extends CandidateExample<unknown, unknown>>(
  candidates: readonly C[],
): CandidateList<C['prompt'], C['completion']> & { at(i: number): C } {
  return {
    length: candidates.length,
    at: (i) => candidates[i]!,
    interactionId: (i) => candidates[i]!.interactionId,
    promptHash: (i) => candidates[i]!.promptHash,
    reward: (i) => candidates[i]!.reward,
    lower: (i) => candidates[i]!.lower,
    upper: (i) => candidates[i]!.upper,
    createdAt: (i) => candidates[i]!.createdAt,
  };
}
