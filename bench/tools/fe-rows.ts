// The feedback-efficiency bench's rating procedures without the training: per arm and budget, the
// rows its sft dataset would get (calibrated reward > 0.01) and how good they truly are (the
// oracle's share of the default population that would like each row's answer). Seconds instead of
// the bench's hour, for tuning a choice procedure before measuring it (bench/README.md,
// feedback-efficiency). Reads the pool the bench cached; the numbers are not the bench's result.
//   node --conditions=source --import tsx bench/tools/fe-rows.ts [--seed N] [--budgets 100,200] [--arms sft,sft-al]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDemoDomain } from '@ratchet/cli';
import { createPopulation, judgeAnswer, SeededRandom, wouldLike } from '@ratchet/core';
import { calibrateProject } from '@ratchet/loop';
import { Store } from '@ratchet/store';
import {
  arms,
  freshProject,
  fullSettings,
  humanOnly,
  type PoolAnswer,
  Ratings,
  type RunCtx,
  rateActive,
  rateRandom,
  ratingPanel,
  shuffle,
} from '../feedback-efficiency.js';
import { workDir } from '../lib/results.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const s = {
  ...fullSettings,
  seed: Number(arg('--seed', '0')),
  budgets: arg('--budgets', fullSettings.budgets.join(',')).split(',').map(Number),
};
const armNames = arg('--arms', 'sft,sft-al,sft-single').split(',');
const poolFile = join(
  workDir,
  'feedback-efficiency',
  `pool-${s.preset}-${s.poolPrompts}x${s.answersPerPrompt}-t${s.temperature}-m${s.maxTokens}-s${s.seed}.json`,
);
const pool = (JSON.parse(readFileSync(poolFile, 'utf8')) as { pool: PoolAnswer[] }).pool;
const domain = loadDemoDomain();
const population = createPopulation({ size: 500, seed: s.seed + 99 });
const liked = new Map(
  pool.map((a) => {
    const judged = judgeAnswer(domain, a.prompt, a.answer);
    return [a.id, population.filter((p) => wouldLike(p, judged)).length / population.length];
  }),
);
const dir = mkdtempSync(join(tmpdir(), 'fe-rows-'));
const store = await Store.open(`sqlite:${join(dir, 'ratchet.db')}`);
const byPrompt = new Map<string, PoolAnswer[]>();
for (const a of pool) byPrompt.set(a.id.split('-')[0]!, [...(byPrompt.get(a.id.split('-')[0]!) ?? []), a]);
const c: RunCtx = {
  s,
  store,
  // Only rating and calibration run here: no model is served or trained.
  server: undefined as never,
  modelDir: '',
  pool,
  domain,
  poolIndex: new Map(pool.map((a, i) => [a.id, i])),
  ratings: new Ratings(ratingPanel(s), domain, s.seed),
  dataDir: dir,
  randomOrder: shuffle([...byPrompt.values()], new SeededRandom(s.seed + 7)).flat(),
  log: console.log,
  notes: [],
};
try {
  for (const budget of s.budgets)
    for (const name of armNames) {
      const arm = arms[name]!;
      const projectId = await freshProject(store, `${name}-${budget}`, pool);
      const counts = new Map<string, number>();
      const note =
        arm.choice === 'random'
          ? (await rateRandom(c, projectId, budget, counts), '')
          : (await rateActive(c, projectId, arm.method, budget, counts, arm.choice)).note;
      const calibration = await calibrateProject(store, projectId, { mapping: humanOnly });
      const rows: string[] = [];
      for await (const page of store.datasets.ratedInteractions(projectId))
        for (const r of page) if (r.reward >= 0.01) rows.push(r.interactionId);
      const quality = rows.reduce((sum, id) => sum + liked.get(id)!, 0) / (rows.length || 1);
      console.log(
        `${name}@${budget}: ${rows.length} rows (${rows.filter((id) => liked.get(id)! > 0.5).length} liked by most), mean liked share ${quality.toFixed(2)}, ${calibration.flagged} flagged${note ? `; ${note}` : ''}`,
      );
    }
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
