import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { type Bench, loadNote } from './lib/bench.js';
import { firstJsonLine, freePort, groupCpuMs, type Proc, startProc } from './lib/procs.js';
import { repoDir, round, workDir } from './lib/results.js';
import { median, spread } from './lib/stats.js';

/** Demo-like questions, so prompts differ in length as real calls do (left padding is exercised). */
const prompts = [
  'Where is my order A1042?',
  'I forgot my password.',
  'Can I get a refund for my broken blender? It arrived damaged.',
  'How do I change the address on my account?',
  'Cancel my subscription please',
  'What are your opening hours on weekends?',
  'My package never arrived and I am upset about it.',
  'Hi',
];

interface Phase {
  tokens: number;
  seconds: number;
  cpuMs: number;
  failed: number;
}

/** One chat call; the completion tokens it produced (0 on failure). */
async function call(url: string, i: number, maxTokens: number): Promise<number> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'tiny',
      messages: [{ role: 'user', content: prompts[i % prompts.length] }],
      max_tokens: maxTokens,
      temperature: 0,
      // Every answer is exactly max_tokens long, so both phases generate the same work.
      ignore_eos: true,
    }),
  });
  if (!res.ok) return 0;
  return ((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens;
}

/** `clients` closed-loop clients, each sending `perClient` calls back to back. */
async function phase(worker: Proc, url: string, clients: number, perClient: number, maxTokens: number) {
  const cpuBefore = groupCpuMs(worker.child.pid!);
  const started = performance.now();
  let failed = 0;
  const counts = await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      let tokens = 0;
      for (let k = 0; k < perClient; k++) {
        const got = await call(url, c * perClient + k, maxTokens);
        if (got === 0) failed++;
        tokens += got;
      }
      return tokens;
    }),
  );
  return {
    tokens: counts.reduce((a, b) => a + b, 0),
    seconds: (performance.now() - started) / 1000,
    cpuMs: groupCpuMs(worker.child.pid!) - cpuBefore,
    failed,
  } satisfies Phase;
}

export const serveBench: Bench = {
  name: 'serve',
  summary:
    'generated tokens/s of ratchet-worker serve at 8 concurrent calls over 1 at a time, tiny model on CPU',
  keyMetrics: ['serve_concurrency_speedup', 'serve_1_at_once_tokens_per_s', 'serve_8_at_once_tokens_per_s'],
  async run(ctx) {
    const loadBefore = loadNote();
    const concurrency = Number(process.env.BENCH_SERVE_CONCURRENCY ?? 8);
    const repeats = Number(process.env.BENCH_SERVE_REPEATS ?? (ctx.tiny ? 1 : 5));
    const maxTokens = Number(process.env.BENCH_SERVE_MAX_TOKENS ?? (ctx.tiny ? 8 : 64));
    // Calls per client and phase: the sequential client makes as many calls as all concurrent
    // clients together, so both phases generate the same tokens.
    const perClient = Number(process.env.BENCH_SERVE_CALLS ?? (ctx.tiny ? 1 : 6));
    const threads = process.env.BENCH_SERVE_THREADS ?? '1';
    const worker = join(repoDir, '.venv', 'bin', 'ratchet-worker');
    const preset = ctx.tiny ? 'test' : 'default';
    const model = join(workDir, 'models', ctx.tiny ? 'tiny-test' : 'tiny-support');
    ctx.log(`serve: ratchet-worker tiny --preset ${preset} --out ${model} (cached once built)`);
    execFileSync(worker, ['tiny', '--preset', preset, '--out', model], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, OMP_NUM_THREADS: threads },
    });
    const port = await freePort();
    const proc = startProc({
      name: 'ratchet-worker serve',
      command: worker,
      args: ['serve', '--base', model, '--base-name', 'tiny', '--port', String(port)],
      // One torch thread, as the demo runs it: the speedup is the batch's, not extra cores'.
      env: { OMP_NUM_THREADS: threads, PYTHONUNBUFFERED: '1' },
      logFile: join(workDir, 'logs', 'serve-worker.log'),
    });
    try {
      await firstJsonLine(proc, 300_000);
      const url = `http://127.0.0.1:${port}`;
      await phase(proc, url, concurrency, 1, maxTokens); // warm-up: first calls allocate and compile
      const runs: { one: Phase; many: Phase }[] = [];
      for (let r = 0; r < repeats; r++) {
        // Interleaved, the order alternating, so a burst of other load hits both alike.
        const measure = async (which: 'one' | 'many') =>
          which === 'one'
            ? phase(proc, url, 1, concurrency * perClient, maxTokens)
            : phase(proc, url, concurrency, perClient, maxTokens);
        const order = r % 2 ? (['many', 'one'] as const) : (['one', 'many'] as const);
        const got = {} as { one: Phase; many: Phase };
        for (const which of order) got[which] = await measure(which);
        runs.push(got);
        const tps = (p: Phase) => p.tokens / p.seconds;
        ctx.log(
          `serve run ${r + 1}/${repeats}: 1 at a time ${tps(got.one).toFixed(1)} tok/s, ${concurrency} at once ${tps(got.many).toFixed(1)} tok/s (x${(tps(got.many) / tps(got.one)).toFixed(2)}), ${loadNote()}`,
        );
      }
      const failed = runs.reduce((n, r) => n + r.one.failed + r.many.failed, 0);
      if (failed) throw new Error(`serve: ${failed} calls failed`);
      const tps = (p: Phase) => p.tokens / p.seconds;
      const ratios = runs.map((r) => tps(r.many) / tps(r.one));
      const cpuPerToken = (p: Phase) => p.cpuMs / p.tokens;
      const cpuRatios = runs.map((r) => cpuPerToken(r.one) / cpuPerToken(r.many));
      const metrics = {
        serve_concurrency_speedup: round(median(ratios), 2),
        serve_1_at_once_tokens_per_s: round(median(runs.map((r) => tps(r.one))), 1),
        [`serve_${concurrency}_at_once_tokens_per_s`]: round(median(runs.map((r) => tps(r.many))), 1),
        serve_1_at_once_cpu_per_token_ms: round(median(runs.map((r) => cpuPerToken(r.one))), 3),
        [`serve_${concurrency}_at_once_cpu_per_token_ms`]: round(
          median(runs.map((r) => cpuPerToken(r.many))),
          3,
        ),
        serve_cpu_speedup_ratio: round(median(cpuRatios), 2),
        serve_failed_calls_count: failed,
      };
      const notes = [
        `ratchet-worker serve (continuous batching) on the tiny local policy (${preset} preset, built by \`ratchet-worker tiny\`), CPU, fp32, ${threads} torch thread(s) (OMP_NUM_THREADS, as the demo runs it).`,
        `Non-streaming chat completions, temperature 0, ${maxTokens} tokens per answer (ignore_eos), ${prompts.length} demo-like prompts in rotation;`,
        `1 at a time: one client, ${concurrency * perClient} calls back to back; ${concurrency} at once: ${concurrency} closed-loop clients, ${perClient} calls each (the same tokens).`,
        `Tokens/s = completion tokens / wall time of the phase, client and HTTP included (the client runs in the bench process on the same 2 cores).`,
        `${repeats} interleaved repeats (order alternating) after a warm-up, median of the per-repeat ratios shown; spread of the ratio ${spread(ratios)}.`,
        `serve_cpu_speedup_ratio: worker CPU time per token, 1 at a time over ${concurrency} at once (contention moves it less than wall time), spread ${spread(cpuRatios)}.`,
        `Machine shared with other engineers' jobs: ${loadBefore} at start, ${loadNote()} at the end; wall times are noisy.`,
      ].join(' ');
      return { metrics, notes };
    } finally {
      await proc.stop(5000);
    }
  },
};
