import { describe, expect, it } from 'vitest';
import type { PairwiseComparison } from '../normalize/pairwise.js';
import { balanceBySegment } from './balance.js';
import {
  buildDpoDataset,
  buildKtoDataset,
  buildRewardDataset,
  buildRwsftDataset,
  buildSftDataset,
} from './builders.js';
import { CandidateColumns, type TaggedTextCandidate } from './columns.js';
import { rowJson } from './row-json.js';
import { assignSplits } from './splits.js';
import {
  type BuiltDataset,
  type CandidateExample,
  lineageFeedbackIds,
  lineageJson,
  type TextCandidate,
} from './types.js';

function candidate(
  id: string,
  prompt: string,
  reward: number | null,
  over: Partial<CandidateExample> = {},
): CandidateExample {
  return {
    interactionId: id,
    promptHash: `h:${prompt}`,
    prompt: [{ role: 'user', content: prompt }],
    completion: { role: 'assistant', content: `answer ${id}` },
    reward,
    lower: reward === null ? null : reward - 0.2,
    upper: reward === null ? null : reward + 0.2,
    n: 3,
    weight: 1,
    createdAt: Number(id.replace(/\D/g, '')) || 0,
    feedbackIds: [`f-${id}`],
    ...over,
  };
}

const interaction = (interactionId: string) => ({ type: 'interaction' as const, interactionId });
const base = { weight: 1, tie: false, raterId: 'r' };

describe('dataset builders', () => {
  const prompts = Array.from({ length: 200 }, (_, p) => `question ${p}`);
  const candidates = prompts.flatMap((q, p) => [
    candidate(`a${p}`, q, 0.8),
    candidate(`b${p}`, q, -0.7),
    candidate(`c${p}`, q, 0.05),
  ]);

  it('never puts one prompt in both train and test, by prompt or by time', () => {
    for (const split of [
      { by: 'prompt' as const, testFraction: 0.2, seed: 3 },
      { by: 'time' as const, testFraction: 0.2 },
    ]) {
      const built = buildDpoDataset(candidates, [], { split, minMargin: 0.5 });
      const where = new Map<string, Set<string>>();
      for (const l of built.lineage)
        where.set(l.promptHash, (where.get(l.promptHash) ?? new Set()).add(l.split));
      expect([...where.values()].every((s) => s.size === 1)).toBe(true);
      expect(built.stats.test_rows).toBeGreaterThan(20);
      expect(built.stats.train_rows).toBeGreaterThan(100);
    }
    const time = assignSplits(candidates, { by: 'time', testFraction: 0.25 });
    expect(time.get('h:question 199')).toBe('test');
    expect(time.get('h:question 0')).toBe('train');
  });

  it('SFT takes confidently top-rated answers and corrections', () => {
    const comparisons: PairwiseComparison[] = [
      {
        ...base,
        source: 'correction',
        feedbackId: 'fx',
        winner: { type: 'correction', feedbackId: 'fx', interactionId: 'b0', text: 'The right answer.' },
        loser: interaction('b0'),
      },
    ];
    const built = buildSftDataset(
      [...candidates.slice(0, 3), candidate('lucky', 'question 0', 0.6, { lower: -0.4, upper: 1 })],
      comparisons,
      { split: { by: 'prompt', testFraction: 0 } },
    );
    expect(built.rows.map((r) => r.completion[0]!.content)).toEqual(['answer a0', 'The right answer.']);
    expect(built.lineage[1]).toMatchObject({ interactionIds: ['b0'], feedbackIds: ['fx'] });
  });

  it("SFT from some models only: their liked answers, people's corrections of any model's, splits as without", () => {
    // Liked answers from the current model (prod) and an older one (old); a correction of an old answer.
    const mixed = prompts.flatMap((q, p) => [
      candidate(`p${p}`, q, 0.8, { model: 'prod' }),
      candidate(`o${p}`, q, 0.8, { model: 'old' }),
      candidate(`x${p}`, q, -0.8, { model: 'old' }),
    ]);
    const comparisons: PairwiseComparison[] = [
      {
        ...base,
        source: 'correction',
        feedbackId: 'fx',
        winner: { type: 'correction', feedbackId: 'fx', interactionId: 'x0', text: 'The right answer.' },
        loser: interaction('x0'),
      },
    ];
    const split = { by: 'prompt' as const, testFraction: 0.25, seed: 1 };
    const every = buildSftDataset(mixed, comparisons, { split });
    const own = buildSftDataset(mixed, comparisons, { split, fromModels: ['prod'] });
    const texts = own.rows.map((r) => r.completion[0]!.content);
    expect(texts.filter((t) => t.startsWith('answer p'))).toHaveLength(200);
    expect(texts.some((t) => t.startsWith('answer o'))).toBe(false);
    expect(texts).toContain('The right answer.');
    expect(own.stats.top_rated).toBe(200);
    expect(every.stats.top_rated).toBe(400);
    // Each prompt keeps the split it has in the unfiltered build (and in the round's other datasets).
    const splitOf = (b: typeof own) => new Map(b.lineage.map((l) => [l.promptHash, l.split]));
    const all = splitOf(every);
    for (const [hash, s] of splitOf(own)) expect(s).toBe(all.get(hash));
    // Answers with no known model are not any named model's.
    const unknown = buildSftDataset([candidate('u1', 'q', 0.9)], [], { split, fromModels: ['prod'] });
    expect(unknown.rows).toHaveLength(0);
    expect(() => buildSftDataset(mixed, [], { fromModels: [] })).toThrow();
  });

  it('KTO labels by calibrated sign, skips uncertain answers, and balances class weights', () => {
    const built = buildKtoDataset(candidates, [], { split: { by: 'prompt', testFraction: 0 } });
    expect(built.stats.desirable).toBe(200);
    expect(built.stats.undesirable).toBe(200);
    expect(built.rows.some((r) => r.completion[0]!.content.startsWith('answer c'))).toBe(false);
    const skewed = buildKtoDataset(
      candidates.filter((c) => !c.interactionId.startsWith('b') || Number(c.interactionId.slice(1)) < 50),
      [],
      { split: { by: 'prompt', testFraction: 0 } },
    );
    const ratio =
      (skewed.stats.desirable! * skewed.stats.desirable_weight!) /
      (skewed.stats.undesirable! * skewed.stats.undesirable_weight!);
    expect(ratio).toBeGreaterThanOrEqual(1);
    expect(ratio).toBeLessThanOrEqual(4 / 3);
  });

  it('DPO pairs answers to one prompt by margin, corrections over originals, explicit preferences', () => {
    const comparisons: PairwiseComparison[] = [
      {
        ...base,
        source: 'correction',
        feedbackId: 'fc',
        winner: { type: 'correction', feedbackId: 'fc', interactionId: 'b1', text: 'Fixed.' },
        loser: interaction('b1'),
      },
      {
        ...base,
        source: 'preference',
        feedbackId: 'fp',
        winner: interaction('c2'),
        loser: interaction('a2'),
      },
      {
        ...base,
        source: 'preference',
        feedbackId: 'fq',
        winner: interaction('a3'),
        loser: interaction('a4'),
      },
      {
        ...base,
        source: 'preference',
        feedbackId: 'ft',
        winner: interaction('a5'),
        loser: interaction('c5'),
        tie: true,
      },
    ];
    const built = buildDpoDataset(candidates.slice(0, 18), comparisons, {
      split: { by: 'prompt', testFraction: 0 },
      minMargin: 1,
    });
    const pairs = built.rows.map((r) => `${r.chosen[0]!.content} > ${r.rejected[0]!.content}`);
    expect(pairs).toContain('answer a0 > answer b0');
    expect(pairs).toContain('Fixed. > answer b1');
    expect(pairs).toContain('answer c2 > answer a2');
    expect(pairs).not.toContain('answer a0 > answer c0'); // margin 0.75 < 1
    expect(built.stats.skipped_cross_prompt).toBe(1);
    expect(pairs.filter((p) => p.includes('answer a5') && p.includes('answer c5'))).toEqual([]);
    const reward = buildRewardDataset(candidates.slice(0, 3), [], {
      split: { by: 'prompt', testFraction: 0 },
    });
    expect(reward.rows[0]!.margin).toBeCloseTo(1.5);
  });

  it('rating-weighted SFT keeps the sign and shrinks weights of uncertain rewards', () => {
    const built = buildRwsftDataset(
      [
        candidate('x1', 'q', 0.9, { lower: 0.8, upper: 1 }),
        candidate('x2', 'q2', -0.9, { lower: -1, upper: 0.6 }),
      ],
      [],
      {
        split: { by: 'prompt', testFraction: 0 },
      },
    );
    expect(built.rows.map((r) => r.reward)).toEqual([0.9, -0.9]);
    expect(built.rows[0]!.weight).toBeGreaterThan(built.rows[1]!.weight);
  });

  it('rating-weighted SFT clamps rewards a posterior put outside [-1, 1]', () => {
    const built = buildRwsftDataset([candidate('x1', 'q', 1.3), candidate('x2', 'q2', -1.68)], [], {
      split: { by: 'prompt', testFraction: 0 },
    });
    expect(built.rows.map((r) => r.reward)).toEqual([1, -1]);
  });

  it('balances segments so that none passes its share', () => {
    const rows = [
      ...Array.from({ length: 80 }, () => ({ segment: 'power-users' })),
      ...Array.from({ length: 20 }, () => ({ segment: 'new' })),
      { segment: undefined },
    ];
    const { kept, dropped } = balanceBySegment(rows, 0.5);
    const power = kept.filter((r) => r.segment === 'power-users').length;
    expect(power / kept.length).toBeLessThanOrEqual(0.5);
    expect(kept.filter((r) => r.segment === 'new')).toHaveLength(20);
    expect(dropped.length + kept.length).toBe(rows.length);
  });

  it('builds the same rows from JSON text as from parsed messages, and rowJson writes them as JSON.stringify does', () => {
    // Messages with what JSON text must carry exactly: escapes, non-ASCII, parts, extra keys,
    // numbers; a correction with a message of its own, a preference and a tie.
    const odd: CandidateExample[] = candidates.slice(0, 30).map((c, i) => ({
      ...c,
      prompt: [
        { role: 'system', content: 'Be "brief".\n\tTabs, é, 😀, \u2028' },
        { role: 'user', content: [{ type: 'text', text: `q${i % 7}` }], extra: { n: 1e21, x: -0.5 } },
      ],
      completion: { role: 'assistant', content: i % 4 ? `ans ${i} </script>` : null, tool_calls: [] },
      promptHash: `h${i % 7}`,
      segment: i % 3 ? 'seg:a' : undefined,
    }));
    const comparisons: PairwiseComparison[] = [
      {
        ...base,
        source: 'correction',
        feedbackId: 'fc',
        winner: {
          type: 'correction',
          feedbackId: 'fc',
          interactionId: odd[1]!.interactionId,
          text: 'Fixed "it".',
          message: { role: 'assistant', content: 'Fixed "it".', name: 'rater' },
        },
        loser: interaction(odd[1]!.interactionId),
      },
      {
        ...base,
        source: 'preference',
        feedbackId: 'fp',
        winner: interaction(odd[8]!.interactionId),
        loser: interaction(odd[15]!.interactionId),
      },
      {
        ...base,
        source: 'preference',
        feedbackId: 'ft',
        winner: interaction(odd[2]!.interactionId),
        loser: interaction(odd[9]!.interactionId),
        tie: true,
      },
    ];
    const asText = (c: CandidateExample): TextCandidate => ({
      ...c,
      prompt: JSON.stringify(c.prompt),
      completion: JSON.stringify(c.completion),
    });
    const builders = {
      sft: buildSftDataset,
      kto: buildKtoDataset,
      dpo: buildDpoDataset,
      reward: buildRewardDataset,
      rwsft: buildRwsftDataset,
    };
    for (const [name, build] of Object.entries(builders)) {
      const spec = {
        split: { by: 'prompt' as const, testFraction: 0.3, seed: 1 },
        maxSegmentShare: 0.6,
        minMargin: 0.1,
      };
      const options =
        name === 'dpo' || name === 'reward' ? spec : { split: spec.split, maxSegmentShare: 0.6 };
      const parsed = (build as typeof buildSftDataset)(odd, comparisons, options);
      const text = (build as typeof buildSftDataset<string, string>)(odd.map(asText), comparisons, options);
      expect(parsed.rows.length, name).toBeGreaterThan(2);
      expect(text.rows.map(rowJson), name).toEqual(parsed.rows.map((r) => JSON.stringify(r)));
      expect(text.lineage, name).toEqual(parsed.lineage);
      expect(text.stats, name).toEqual(parsed.stats);
    }
    // A property without JSON is left out, an array element without JSON is null, as JSON.stringify does.
    expect(rowJson({ prompt: '[]', skip: undefined, completion: ['{}', undefined], label: false })).toBe(
      JSON.stringify({ prompt: [], skip: undefined, completion: [{}, undefined], label: false }),
    );
  });
});

describe('CandidateColumns', () => {
  it('builds every method from columns as from the candidates they hold, unrated ones, segments and a subset included', () => {
    const texts: TaggedTextCandidate[] = Array.from({ length: 90 }, (_, i) => ({
      interactionId: `i${String(i).padStart(3, '0')}`,
      promptHash: `h${i % 13}`,
      prompt: JSON.stringify([{ role: 'user', content: `q${i % 13}` }]),
      completion: JSON.stringify({ role: 'assistant', content: `a${i}` }),
      // Every seventh unrated: only pairwise evidence speaks about it.
      reward: i % 7 === 0 ? null : Math.sin(i * 1.7),
      lower: i % 7 === 0 ? null : Math.sin(i * 1.7) - 0.3,
      upper: i % 7 === 0 ? null : Math.sin(i * 1.7) + 0.3,
      n: i % 7 === 0 ? 0 : 1 + (i % 4),
      weight: i % 5 === 0 ? 0.5 : 1,
      createdAt: 1_000 + i,
      ...(i % 2 ? { model: `m${i % 3}` } : {}),
      tags: i % 3 ? [`plan:${i % 2 ? 'pro' : 'free'}`] : [],
      feedbackIds: Array.from({ length: i % 4 }, (_, k) => `f${i}-${k}`),
    }));
    const table = new CandidateColumns();
    for (const c of texts) table.push(c);
    expect(table.length).toBe(texts.length);
    expect(table.all().toArray()).toEqual(texts);
    const comparisons: PairwiseComparison[] = [
      {
        ...base,
        source: 'preference',
        feedbackId: 'fp',
        winner: interaction('i007'),
        loser: interaction('i020'),
      },
      {
        ...base,
        source: 'correction',
        feedbackId: 'fc',
        winner: { type: 'correction', feedbackId: 'fc', interactionId: 'i014', text: 'Better.' },
        loser: interaction('i014'),
      },
    ];
    const builders = [
      buildSftDataset,
      buildKtoDataset,
      buildDpoDataset,
      buildRewardDataset,
      buildRwsftDataset,
    ];
    const options = { split: { by: 'prompt' as const, testFraction: 0.3 }, maxSegmentShare: 0.6 };
    const pro = (c: TaggedTextCandidate) => c.tags.includes('plan:pro');
    const segmentOf = (c: TaggedTextCandidate) => c.tags.find((t) => t.startsWith('plan:'));
    const view = table
      .all()
      .select((i) => table.tags(i).includes('plan:pro'))
      .withSegments('plan:');
    const array = texts.filter(pro).map((c) => {
      const segment = segmentOf(c);
      return segment === undefined ? c : { ...c, segment };
    });
    // A table's rows keep their candidate's joined feedback ids: the same lineage lines.
    const asWritten = <R>(b: BuiltDataset<R>) => ({ ...b, lineage: b.lineage.map(lineageJson) });
    for (const build of builders) {
      const fromTable = (build as typeof buildSftDataset<string, string>)(table.all(), comparisons, options);
      const fromArray = (build as typeof buildSftDataset<string, string>)(texts, comparisons, options);
      expect(asWritten(fromTable)).toEqual(asWritten(fromArray));
      expect(fromTable.lineage.map(lineageFeedbackIds)).toEqual(fromArray.lineage.map((l) => l.feedbackIds));
      expect(fromTable.rows.length, build.name).toBeGreaterThan(0);
      const ofView = (build as typeof buildSftDataset<string, string>)(view, comparisons, options);
      const ofArray = (build as typeof buildSftDataset<string, string>)(array, comparisons, options);
      expect(asWritten(ofView)).toEqual(asWritten(ofArray));
      // One row per candidate (sft, kto, rwsft): no array of ids per row.
      if (![buildDpoDataset, buildRewardDataset].includes(build as never))
        expect(
          fromTable.lineage.filter((l) => typeof l.feedbackIds === 'string').length,
          build.name,
        ).toBeGreaterThan(fromTable.rows.length / 2);
    }
    // Repeated ids are kept once, as a row's lineage lists them.
    const twice = new CandidateColumns();
    twice.push({ ...texts[1]!, feedbackIds: ['x', 'y', 'x'] });
    expect(twice.feedbackIdsText(0)).toBe('x,y');
    // Ids are joined by a comma: one holding a comma would come back as two.
    expect(() => table.push({ ...texts[0]!, feedbackIds: ['a,b'] })).toThrow(/comma/);
  });
});
