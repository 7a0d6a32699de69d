import cliProgress from 'cli-progress';

export interface Progress {
  increment(n?: number): void;
  stop(): void;
}

/** A progress bar with rate and ETA on a terminal; a line every few seconds when piped (CI logs). */
export function progressBar(label: string, total: number): Progress {
  if (!process.stderr.isTTY) {
    let done = 0;
    let lastPrint = 0;
    const started = Date.now();
    return {
      increment(n = 1) {
        done += n;
        const now = Date.now();
        if (now - lastPrint > 5000 || done === total) {
          lastPrint = now;
          const rate = done / Math.max(0.001, (now - started) / 1000);
          const eta = rate > 0 ? Math.round((total - done) / rate) : 0;
          process.stderr.write(`${label}: ${done}/${total} (${Math.round(rate)}/s, eta ${eta}s)\n`);
        }
      },
      stop() {},
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {value}/{total} | {rate}/s | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = Date.now();
  bar.start(total, 0, { rate: 0 });
  let done = 0;
  return {
    increment(n = 1) {
      done += n;
      bar.update(done, { rate: Math.round(done / Math.max(0.001, (Date.now() - started) / 1000)) });
    },
    stop() {
      bar.stop();
    },
  };
}
