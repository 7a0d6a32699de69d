import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Bench, loadNote } from './lib/bench.js';
import { runJson } from './lib/procs.js';
import { repoDir, workDir } from './lib/results.js';

/** What bench/train_throughput.py prints: metrics plus the per-run detail the notes quote. */
interface TrainThroughputOutput {
  metrics: Record<string, number>;
  runs: Record<string, { final_loss: { ours: number; trl: number } } & Record<string, unknown>>;
  config: {
    preset: string;
    pairs: number;
    epochs: number;
    batch: number;
    torch_threads: number;
    cpus: number;
  };
}

const methods = ['sft', 'kto', 'dpo', 'reward', 'rwsft'];

export const trainThroughput: Bench = {
  name: 'train-throughput',
  summary: "training tokens/s of the worker's trainers vs TRL's with its defaults, tiny model on CPU",
  keyMetrics: [
    'train_speedup_vs_trl',
    ...methods.flatMap((m) => [`train_tokens_per_s_cpu_${m}`, `trl_tokens_per_s_cpu_${m}`]),
  ],
  async run(ctx) {
    const loadBefore = loadNote();
    // The smoke test trains one TRL-backed method and our own trainer, on 8 pairs for one step.
    // BENCH_TT_METHODS=reward runs a subset; BENCH_TT_THREADS=0 keeps torch's default threads (1 by default).
    // BENCH_TT_REPEATS=5 repeats each pair of runs five times.
    const methodFilter = process.env.BENCH_TT_METHODS;
    const args = [
      ...(ctx.tiny
        ? ['--tiny', '--methods', methodFilter ?? 'dpo,rwsft']
        : methodFilter
          ? ['--methods', methodFilter]
          : []),
      ...(process.env.BENCH_TT_THREADS ? ['--threads', process.env.BENCH_TT_THREADS] : []),
      // More interleaved repeats steady the medians when other jobs load the machine (3 by default).
      ...(process.env.BENCH_TT_REPEATS ? ['--repeats', process.env.BENCH_TT_REPEATS] : []),
    ];
    ctx.log(`train-throughput: .venv/bin/python bench/train_throughput.py ${args.join(' ')}`);
    const out = await runJson<TrainThroughputOutput>(
      {
        name: 'train-throughput',
        command: join(repoDir, '.venv', 'bin', 'python'),
        args: [join(repoDir, 'bench', 'train_throughput.py'), ...args],
        env: { PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: undefined },
        // Per-run progress lines (time, tokens/s, loss, load) for watching a long run.
        logFile: join(workDir, 'logs', 'train-throughput.log'),
      },
      (ctx.tiny ? 10 : 120) * 60_000,
    );
    // Every run's time, CPU time, loss and load, for a closer look than the medians.
    mkdirSync(join(workDir, 'logs'), { recursive: true });
    writeFileSync(join(workDir, 'logs', 'train-throughput-runs.json'), `${JSON.stringify(out, null, 2)}\n`);
    const c = out.config;
    const losses = Object.entries(out.runs)
      .map(([m, r]) => `${m} ${r.final_loss.ours} vs ${r.final_loss.trl}`)
      .join(', ');
    const notes = [
      `Tiny local policy (${c.preset} preset) on CPU, fp32, LoRA r16 all-linear, ${c.pairs} preference pairs from the demo domain,`,
      `${c.epochs} epoch(s), batch ${c.batch}, lr 1e-3, logging every step; ${c.torch_threads} torch threads on ${c.cpus} cores.`,
      "Ours: the worker's trainers as `ratchet-worker train` runs them (no gradient checkpointing, reference log-probs",
      'precomputed in one batched pass for dpo/kto (kto: a completion and its mismatched KL completion packed in one row), length-grouped batches for sft/rwsft/reward/dpo,',
      'fixed length-grouped batches holding both labels for kto, reward and dpo pairs packed one per row, an LM head computing log-probs only and the loss-only metrics',
      '(sft, kto, dpo), the heap frozen from the GC while training). TRL: its trainer with its default',
      'config (gradient checkpointing on, reference forward every step, random batches, chosen and rejected as separate padded rows), only the shared hyperparameters set',
      "and fp32 (TRL's default bf16 cannot run on this CPU), plus our objective: assistant-only loss (sft), reward centering 0.01 (reward). rwsft has no TRL counterpart: TRL's SFTTrainer on the same",
      '(prompt, completion) rows stands in, so its losses are of different objectives.',
      'Tokens: real (non-pad) tokens of the rows trained on, the same for both sides; time: model load to trained adapter saved.',
      `Interleaved ours/TRL runs (order alternating), median of the repeats; final loss = mean of the last quarter of steps,`,
      `ours vs TRL: ${losses}. cpu_time_speedup_* is the ratio of process CPU time, less disturbed by other load.`,
      `Machine shared with other engineers' jobs: ${loadBefore} at start, ${loadNote()} at the end; wall times are noisy.`,
      'No GPU here: the GPU path (bf16, FSDP through accelerate with worker/configs/fsdp.yaml) is not measured.',
    ].join(' ');
    return { metrics: out.metrics, notes };
  },
};
