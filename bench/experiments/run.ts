// Runs the experiments bench on its own and writes bench/results/experiments.json
// (format: ../shared/BENCH.md):
//   node --conditions=source --import tsx bench/experiments/run.ts [--tiny] [--no-write]
// The README table line is written by bench/run.ts once the bench is registered there.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type BenchContext, loadNote } from '../lib/bench.js';
import { benchDir, commit, machine } from '../lib/results.js';
import { experimentsBench } from './experiments.js';

async function main(argv: string[]): Promise<number> {
  const tiny = argv.includes('--tiny');
  const ctx: BenchContext = {
    tiny,
    profile: false,
    log: (m) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}`),
  };
  ctx.log(`machine ${JSON.stringify(machine())}, ${loadNote()}, commit ${commit()}`);
  const date = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const outcome = await experimentsBench.run(ctx);
  const result = { bench: experimentsBench.name, date, commit: commit(), machine: machine(), ...outcome };
  console.log(JSON.stringify(result, null, 2));
  if (!tiny && !argv.includes('--no-write')) {
    const dir = join(benchDir, 'results');
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 'experiments.json');
    writeFileSync(path, `${JSON.stringify(result, null, 2)}\n`);
    ctx.log(`wrote ${path}`);
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
