// Runs Ratchet's benchmarks and records their results (see bench/README.md):
//   node --conditions=source --import tsx bench/run.ts [name...] [--profile] [--tiny] [--list]
// Each bench writes bench/results/<bench>.json (format: ../shared/BENCH.md) and its line in the
// table of bench/README.md.
import { type BenchContext, loadNote } from './lib/bench.js';
import { commit, machine, updateReadme, writeResult } from './lib/results.js';
import { benches, keyMetrics, runBench } from './registry.js';

function usage(): string {
  return [
    'usage: node --conditions=source --import tsx bench/run.ts [name...] [options]',
    '',
    'benchmarks (all when none is named):',
    ...benches.map((b) => `  ${b.name.padEnd(16)} ${b.summary}`),
    '',
    'options:',
    '  --profile   run ratchet with --cpu-prof; profiles go to bench/.work/profiles',
    '  --tiny      the smoke-test configuration (seconds; results are not written)',
    '  --no-write  print the result but write neither bench/results nor the README table',
    '  --list      list the benchmarks',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const flags = new Set(argv.filter((a) => a.startsWith('--')));
  const names = argv.filter((a) => !a.startsWith('--'));
  if (flags.has('--help') || flags.has('-h')) {
    console.log(usage());
    return 0;
  }
  if (flags.has('--list')) {
    for (const b of benches) console.log(`${b.name}\t${b.summary}`);
    return 0;
  }
  const unknownFlag = [...flags].find((f) => !['--profile', '--tiny', '--no-write'].includes(f));
  if (unknownFlag) {
    console.error(`unknown option ${unknownFlag}\n\n${usage()}`);
    return 2;
  }
  const unknown = names.filter((n) => !benches.some((b) => b.name === n));
  if (unknown.length) {
    console.error(`unknown benchmark(s): ${unknown.join(', ')}\n\n${usage()}`);
    return 2;
  }
  const selected = names.length ? benches.filter((b) => names.includes(b.name)) : benches;
  const tiny = flags.has('--tiny');
  const ctx: BenchContext = {
    tiny,
    profile: flags.has('--profile'),
    log: (m) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}`),
  };
  ctx.log(`machine ${JSON.stringify(machine())}, ${loadNote()}, commit ${commit()}`);
  let failed = 0;
  for (const bench of selected) {
    ctx.log(`running ${bench.name}${tiny ? ' (tiny)' : ''}`);
    try {
      const result = await runBench(bench, ctx);
      console.log(JSON.stringify(result, null, 2));
      if (!tiny && !flags.has('--no-write')) {
        const path = writeResult(result);
        updateReadme(keyMetrics());
        ctx.log(`wrote ${path} and the table in bench/README.md`);
      }
    } catch (err) {
      failed++;
      ctx.log(`${bench.name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
  }
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
