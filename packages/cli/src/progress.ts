import cliProgress from 'cli-progress';

export interface Progress {
  increment(n?: number): void;
  stop(): void;
}

/**
 * A progress bar with rate and ETA on a terminal; a line every few seconds when piped (CI logs).
 * `start` is work done before the bar existed (a bar made at the first progress report): it
 * counts toward the position but not the rate, which would otherwise look instantaneous.
 */
export function progressBar(label: string, total: number, start = 0): Progress {
  if (!process.stderr.isTTY) {
    let done = start;
    let lastPrint = 0;
    const started = Date.now();
    return {
      increment(n = 1) {
        done += n;
        const now = Date.now();
        const elapsed = (now - started) / 1000;
        if ((now - lastPrint > 5000 && elapsed >= 1) || done === total) {
          lastPrint = now;
          const rate = (done - start) / Math.max(0.001, elapsed);
          const eta = rate > 0 ? `${Math.round((total - done) / rate)}s` : '?';
          process.stderr.write(
            `${label}: ${done}/${total} (${rate.toFixed(rate < 10 ? 1 : 0)}/s, eta ${eta})\n`,
          );
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
  bar.start(total, start, { rate: 0 });
  let done = start;
  return {
    increment(n = 1) {
      done += n;
      const rate = (done - start) / Math.max(0.001, (Date.now() - started) / 1000);
      bar.update(done, { rate: rate.toFixed(rate < 10 ? 1 : 0) });
    },
    stop() {
      bar.stop();
    },
  };
}

/** Follows a run's worker events with a progress bar (steps, rate, ETA). */
export function stepBar(label: string | ((method: string) => string)): {
  onEvent: (e: { type: string }, p: { step: number; total: number }) => void;
  stop(): void;
} {
  let bar: Progress | undefined;
  let shown = 0;
  let method = '';
  return {
    onEvent(event, progress) {
      if (event.type === 'job') method = String((event as { method?: unknown }).method ?? '');
      if (event.type === 'start') {
        bar?.stop();
        const text = typeof label === 'string' ? label : label(method);
        bar = progressBar(text, Math.max(1, progress.total - progress.step));
        shown = progress.step;
      } else if (event.type === 'progress' && bar) {
        bar.increment(progress.step - shown);
        shown = progress.step;
      }
    },
    stop() {
      bar?.stop();
    },
  };
}
