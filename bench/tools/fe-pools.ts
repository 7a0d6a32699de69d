// Samples (or finds cached) the feedback-efficiency pools for the given seeds, nothing else:
//   node --conditions=source --import tsx bench/tools/fe-pools.ts [--seeds 0,1,2] [--prompts 300] [--answers 2]
import { loadDemoDomain } from '@ratchet/cli';
import { LocalModelServer } from '@ratchet/loop';
import {
  fullSettings,
  ratePoolConcurrency,
  samplePool,
  tinyModel,
  trainEnv,
} from '../feedback-efficiency.js';
import { freePort } from '../lib/procs.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const log = (m: string) => console.log(m);
const modelDir = await tinyModel(fullSettings.preset, log);
const server = new LocalModelServer({
  baseModel: modelDir,
  baseName: 'base',
  port: await freePort(),
  env: trainEnv,
  onLog: () => {},
});
try {
  await server.ensure([]);
  for (const seed of arg('--seeds', '0,1,2').split(',').map(Number)) {
    const t0 = Date.now();
    const s = {
      ...fullSettings,
      seed,
      poolPrompts: Number(arg('--prompts', String(fullSettings.poolPrompts))),
      answersPerPrompt: Number(arg('--answers', String(fullSettings.answersPerPrompt))),
    };
    const pool = await samplePool(
      server,
      loadDemoDomain(),
      s,
      modelDir,
      log,
      s.answersPerPrompt === 1 ? ratePoolConcurrency : 1,
    );
    log(`seed ${seed}: ${pool.length} answers (${Math.round((Date.now() - t0) / 1000)} s)`);
  }
} finally {
  await server.stop();
}
