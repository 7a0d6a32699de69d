import { execFileSync } from 'node:child_process';
import { basename, dirname, join } from 'node:path';
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
async function call(url: string, model: string, i: number, maxTokens: number): Promise<number> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
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

/** `clients` closed-loop clients, each sending `perClient` calls back to back; call i goes to
 * `models[i % models.length]`. */
async function phase(
  worker: Proc,
  url: string,
  models: string[],
  clients: number,
  perClient: number,
  maxTokens: number,
) {
  const cpuBefore = groupCpuMs(worker.child.pid!);
  const started = performance.now();
  let failed = 0;
  const counts = await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      let tokens = 0;
      for (let k = 0; k < perClient; k++) {
        const i = c * perClient + k;
        const got = await call(url, models[i % models.length]!, i, maxTokens);
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

/**
 * `count` LoRA adapters of the model (random weights: what is measured is the arithmetic, not
 * what they say), made once under bench/.work, then loaded into the running worker at run time.
 */
async function loadAdapters(url: string, worker: string, model: string, count: number): Promise<string[]> {
  const dir = join(workDir, 'serve-adapters', basename(model));
  const script = `
import os, sys, torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
model, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(count):
    folder = os.path.join(out, f"a{i}")
    if os.path.exists(os.path.join(folder, "adapter_config.json")):
        continue
    torch.manual_seed(i)
    config = LoraConfig(r=16, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(AutoModelForCausalLM.from_pretrained(model), config).save_pretrained(folder)
`;
  execFileSync(join(dirname(worker), 'python'), ['-c', script, model, dir, String(count)], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, OMP_NUM_THREADS: '1', TRANSFORMERS_VERBOSITY: 'error', PYTHONWARNINGS: 'ignore' },
  });
  const names = Array.from({ length: count }, (_, i) => `adapter-${i}`);
  for (const [i, name] of names.entries()) {
    const res = await fetch(`${url}/v1/models/load`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name, path: join(dir, `a${i}`) }),
    });
    if (!res.ok) throw new Error(`serve: loading ${name} failed: ${await res.text()}`);
  }
  return names;
}

export const serveBench: Bench = {
  name: 'serve',
  summary:
    'generated tokens/s of ratchet-worker serve at 8 concurrent calls over 1 at a time, tiny model on CPU',
  keyMetrics: [
    'serve_concurrency_speedup',
    'serve_1_at_once_tokens_per_s',
    'serve_8_at_once_tokens_per_s',
    'serve_mixed_adapters_speedup_ratio',
  ],
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
      const adapters = await loadAdapters(url, worker, model, ctx.tiny ? 2 : 4);
      // Warm-up: first calls allocate and compile; the adapters' first calls too.
      await phase(proc, url, ['tiny'], concurrency, 1, maxTokens);
      await phase(proc, url, adapters, concurrency, 1, maxTokens);
      type Which = 'one' | 'many' | 'oneMixed' | 'manyMixed';
      const measure = (which: Which) => {
        const models = which.endsWith('Mixed') ? adapters : ['tiny'];
        return which.startsWith('one')
          ? phase(proc, url, models, 1, concurrency * perClient, maxTokens)
          : phase(proc, url, models, concurrency, perClient, maxTokens);
      };
      const tps = (p: Phase) => p.tokens / p.seconds;
      const runs: Record<Which, Phase>[] = [];
      for (let r = 0; r < repeats; r++) {
        // Interleaved, the order alternating, so a burst of other load hits both alike.
        const order: Which[] =
          r % 2 ? ['manyMixed', 'oneMixed', 'many', 'one'] : ['one', 'many', 'oneMixed', 'manyMixed'];
        const got = {} as Record<Which, Phase>;
        for (const which of order) got[which] = await measure(which);
        runs.push(got);
        ctx.log(
          `serve run ${r + 1}/${repeats}: base 1 at a time ${tps(got.one).toFixed(1)} tok/s, ${concurrency} at once ${tps(got.many).toFixed(1)} tok/s (x${(tps(got.many) / tps(got.one)).toFixed(2)}); ${adapters.length} adapters 1 at a time ${tps(got.oneMixed).toFixed(1)}, ${concurrency} at once ${tps(got.manyMixed).toFixed(1)} (x${(tps(got.manyMixed) / tps(got.oneMixed)).toFixed(2)}), ${loadNote()}`,
        );
      }
      const failed = runs.reduce(
        (n, r) => n + r.one.failed + r.many.failed + r.oneMixed.failed + r.manyMixed.failed,
        0,
      );
      if (failed) throw new Error(`serve: ${failed} calls failed`);
      const ratios = runs.map((r) => tps(r.many) / tps(r.one));
      const mixedRatios = runs.map((r) => tps(r.manyMixed) / tps(r.oneMixed));
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
        serve_mixed_adapters_speedup_ratio: round(median(mixedRatios), 2),
        serve_adapters_1_at_once_tokens_per_s: round(median(runs.map((r) => tps(r.oneMixed))), 1),
        [`serve_adapters_${concurrency}_at_once_tokens_per_s`]: round(
          median(runs.map((r) => tps(r.manyMixed))),
          1,
        ),
        serve_failed_calls_count: failed,
      };
      const notes = [
        `ratchet-worker serve (continuous batching) on the tiny local policy (${preset} preset, built by \`ratchet-worker tiny\`), CPU, fp32, ${threads} torch thread(s) (OMP_NUM_THREADS, as the demo runs it).`,
        `Non-streaming chat completions, temperature 0, ${maxTokens} tokens per answer (ignore_eos), ${prompts.length} demo-like prompts in rotation;`,
        `1 at a time: one client, ${concurrency * perClient} calls back to back; ${concurrency} at once: ${concurrency} closed-loop clients, ${perClient} calls each (the same tokens).`,
        `Tokens/s = completion tokens / wall time of the phase, client and HTTP included (the client runs in the bench process on the same 2 cores).`,
        `${repeats} interleaved repeats (order alternating) after a warm-up, median of the per-repeat ratios shown; spread of the ratio ${spread(ratios)}.`,
        `Across adapters: the same two phases with call i going to LoRA adapter i mod ${adapters.length} (r 16, all linear layers, random weights, loaded at run time through /v1/models/load), so 8 at once mixes adapters in each batch; serve_mixed_adapters_speedup_ratio is their median ratio, spread ${spread(mixedRatios)}.`,
        `serve_cpu_speedup_ratio: worker CPU time per token, 1 at a time over ${concurrency} at once (contention moves it less than wall time), spread ${spread(cpuRatios)}.`,
        `Machine shared with other engineers' jobs: ${loadBefore} at start, ${loadNote()} at the end; wall times are noisy.`,
      ].join(' ');
      return { metrics, notes };
    } finally {
      await proc.stop(5000);
    }
  },
};
