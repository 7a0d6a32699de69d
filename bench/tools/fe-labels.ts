// The feedback-efficiency bench's reward model at a rating rate, without the policy training: per
// training length, how well its scores order held-out human ratings and the oracle (AUC), and what
// the labelling rule (chooseLabelRule) would certify. Minutes instead of the bench's hour, for
// choosing the reward model's training before measuring it (bench/README.md, feedback-efficiency).
//   node --conditions=source --import tsx bench/tools/fe-labels.ts [--seed N] [--rate 0.15] [--steps 0,40,120]
// (steps 0: the worker's 2 epochs, as the bench trained it before). The numbers are not the bench's result.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDemoDomain } from '@ratchet/cli';
import { judgeAnswer, SeededRandom } from '@ratchet/core';
import {
  calibrateProject,
  chooseLabelRule,
  EndpointSpec,
  LocalModelServer,
  rewardScores,
} from '@ratchet/loop';
import { Store } from '@ratchet/store';
import {
  auc,
  buildAndTrain,
  freshProject,
  fullSettings,
  humanOnly,
  type PoolAnswer,
  Ratings,
  type RunCtx,
  rateRandom,
  ratingPanel,
  rewardModelTraining,
  samplePool,
  shuffle,
  tinyModel,
  trainEnv,
} from '../feedback-efficiency.js';
import { freePort } from '../lib/procs.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const s = { ...fullSettings, seed: Number(arg('--seed', '0')) };
const rate = Number(arg('--rate', '0.15'));
const stepsList = arg('--steps', '0,40,120').split(',').map(Number);

const log = (m: string) => console.log(m);
const dir = mkdtempSync(join(tmpdir(), 'fe-labels-'));
const modelDir = await tinyModel(s.preset, log);
const domain = loadDemoDomain();
const store = await Store.open(`sqlite:${join(dir, 'ratchet.db')}`);
const server = new LocalModelServer({
  baseModel: modelDir,
  baseName: 'base',
  port: await freePort(),
  env: trainEnv,
  onLog: () => {},
});
try {
  await server.ensure([]);
  const pool = await samplePool(server, domain, s, modelDir, log);
  const byPrompt = new Map<string, PoolAnswer[]>();
  for (const a of pool) byPrompt.set(a.id.split('-')[0]!, [...(byPrompt.get(a.id.split('-')[0]!) ?? []), a]);
  const c: RunCtx = {
    s,
    store,
    server,
    modelDir,
    pool,
    domain,
    poolIndex: new Map(pool.map((a, i) => [a.id, i])),
    ratings: new Ratings(ratingPanel(s), domain, s.seed),
    dataDir: join(dir, 'data'),
    randomOrder: shuffle([...byPrompt.values()], new SeededRandom(s.seed + 7)).flat(),
    log,
    notes: [],
  };
  const good = new Map(pool.map((a) => [a.id, judgeAnswer(domain, a.prompt, a.answer).good]));
  const projectId = await freshProject(store, 'labels', pool);
  const counts = new Map<string, number>();
  await rateRandom(c, projectId, Math.round(rate * pool.length) * s.ratersPerAnswer, counts);
  await calibrateProject(store, projectId, { mapping: humanOnly });
  const rated = new Map<string, number>();
  for await (const page of store.datasets.ratedInteractions(projectId))
    for (const r of page) rated.set(r.interactionId, r.reward);
  for (const steps of stepsList) {
    const name = `rm-${Math.round(rate * 100)}-${steps}`;
    const t0 = Date.now();
    const rm = await buildAndTrain(
      c,
      projectId,
      name,
      'reward',
      { minMargin: 0.05 },
      {
        ...rewardModelTraining,
        ...(steps > 0 ? { hyperparameters: { maxSteps: steps } } : {}),
      },
    );
    if (!rm.adapterPath) {
      log(`${name}: no model (${rm.note})`);
      continue;
    }
    await server.ensure([{ name, adapterPath: rm.adapterPath }]);
    const trained = new Set(await store.datasets.members(projectId, rm.datasetId!, 'train'));
    const scores = await rewardScores(
      EndpointSpec.parse({ baseURL: server.baseUrl, model: name }),
      pool.map((a) => [
        { role: 'user' as const, content: a.prompt },
        { role: 'assistant' as const, content: a.answer },
      ]),
    );
    const byId = new Map(pool.map((a, k) => [a.id, scores[k]!]));
    const heldOut = [...rated].filter(([id, r]) => r !== 0 && !trained.has(id));
    const human = heldOut.map(([id, r]) => ({ id, score: byId.get(id)!, up: r > 0, positive: r > 0 }));
    const unrated = pool.filter((a) => !rated.has(a.id));
    const trainFit = [...rated]
      .filter(([id, r]) => r !== 0 && trained.has(id))
      .map(([id, r]) => ({ score: byId.get(id)!, positive: r > 0 }));
    const rule = chooseLabelRule(human, { targetPrecision: 0.8, alpha: 0.1 });
    const f = (v: number | null) => (v === null ? '-' : v.toFixed(3));
    log(
      `${name}: ${rm.rows} pairs, ${Math.round((Date.now() - t0) / 1000)} s; AUC train ${f(auc(trainFit))} (${trainFit.length}), held-out vs people ${f(auc(human))} (${human.length}, ${human.filter((h) => h.up).length} liked), held-out vs oracle ${f(auc(heldOut.map(([id]) => ({ score: byId.get(id)!, positive: good.get(id)! }))))}, unrated vs oracle ${f(auc(unrated.map((a) => ({ score: byId.get(a.id)!, positive: good.get(a.id)! }))))} (${unrated.length}); rule: up ${rule.up ? `>= ${rule.up.threshold.toFixed(3)} (${rule.up.correct}/${rule.up.heldOut})` : 'none'}, down ${rule.down ? `<= ${rule.down.threshold.toFixed(3)} (${rule.down.correct}/${rule.down.heldOut})` : 'none'}; ${rule.reasons.join('; ')}`,
    );
  }
} finally {
  await server.stop();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
