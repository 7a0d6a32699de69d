// The similar-ratings labeller at a rating rate, without training: on the cached pool, people rate
// `rate` of it (the bench's random order and panel), calibration runs, and the labeller's
// cross-fitted rule is chosen; prints its certified precision and the oracle's agreement with its
// labels on the unrated answers. Seconds; for choosing the labeller's settings before the bench.
//   node --conditions=source --import tsx bench/tools/fe-similar.ts [--seeds 0,1,2] [--rates 0.05,0.15] [--prompts 1000]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDemoDomain } from '@ratchet/cli';
import { judgeAnswer, SeededRandom } from '@ratchet/core';
import { calibrateProject, labelFromRatings } from '@ratchet/loop';
import { Store } from '@ratchet/store';
import {
  freshProject,
  fullSettings,
  humanOnly,
  Ratings,
  type RunCtx,
  ratePoolConcurrency,
  rateRandom,
  ratingPanel,
  samplePool,
  shuffle,
} from '../feedback-efficiency.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const log = (m: string) => console.log(m);
const domain = loadDemoDomain();
const dir = mkdtempSync(join(tmpdir(), 'fe-similar-'));
const store = await Store.open(`sqlite:${join(dir, 'ratchet.db')}`);
try {
  for (const seed of arg('--seeds', '0,1,2').split(',').map(Number)) {
    // The rate arms' pool: one answer per prompt, rated in a random order of answers (seedCtx).
    const s = {
      ...fullSettings,
      seed,
      poolPrompts: Number(arg('--prompts', String(fullSettings.ratePoolPrompts))),
      answersPerPrompt: 1,
    };
    // The pool must be cached (bench/tools/fe-pools.ts): no model server here.
    const pool = await samplePool(
      null as never,
      domain,
      s,
      join('bench', '.work', 'models', 'tiny-support'),
      log,
      ratePoolConcurrency,
    );
    const c = {
      s,
      store,
      pool,
      domain,
      poolIndex: new Map(pool.map((a, i) => [a.id, i])),
      ratings: new Ratings(ratingPanel(s), domain, seed),
      randomOrder: shuffle(pool, new SeededRandom(seed + 13)),
      log,
      notes: [],
    } as unknown as RunCtx;
    const good = new Map(pool.map((a) => [a.id, judgeAnswer(domain, a.prompt, a.answer).good]));
    for (const rate of arg('--rates', '0.05,0.15').split(',').map(Number)) {
      const projectId = await freshProject(store, `sim-${seed}-${rate}`, pool);
      const counts = new Map<string, number>();
      await rateRandom(c, projectId, Math.round(rate * pool.length) * s.ratersPerAnswer, counts);
      await calibrateProject(store, projectId, { mapping: humanOnly });
      const rewards = new Map<string, number>();
      for await (const page of store.datasets.ratedInteractions(projectId))
        for (const r of page) rewards.set(r.interactionId, r.reward);
      const rated = [...rewards].filter(([, r]) => r !== 0);
      const liked = (wantGood: boolean) => {
        const xs = rated.filter(([id]) => good.get(id) === wantGood);
        return `${xs.filter(([, r]) => r > 0).length}/${xs.length}`;
      };
      log(`  people like oracle-good answers ${liked(true)}, oracle-bad ${liked(false)}`);
      const report = await labelFromRatings(store, projectId, {
        limit: pool.length,
        scorer: arg('--scorer', 'words') as 'words',
      });
      const labels = (await store.feedback.currentOfKinds(projectId, ['thumbs'])).filter(
        (f) => f.source === 'judge',
      );
      const agree = labels.filter((f) => good.get(f.interactionId) === (f.value === 1)).length;
      const h = report.reliability;
      const unratedGood =
        pool.filter((a) => !counts.has(a.id) && good.get(a.id)).length / (pool.length - counts.size);
      log(
        `seed ${seed} rate ${rate}: ${counts.size} rated, ${h.heldOut} held-out; labelled ${report.labeled} of ${report.looked} (${report.up} up, ${report.down} down), precision ${h.precision?.toFixed(3) ?? '-'} on ${h.checkLabeled} (lower ${h.lower?.toFixed(3) ?? '-'}); oracle agrees ${labels.length ? (agree / labels.length).toFixed(3) : '-'} (unrated good share ${unratedGood.toFixed(3)}); ${h.reasons.join('; ')}`,
      );
    }
  }
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
