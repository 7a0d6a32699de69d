import { loadavg } from 'node:os';

export interface BenchContext {
  /** Tiny configuration for the smoke test: seconds, a few requests, SQLite only, no competitors. */
  tiny: boolean;
  /** Run ratchet with --cpu-prof and write profiles under bench/.work/profiles. */
  profile: boolean;
  log: (message: string) => void;
}

export interface BenchOutcome {
  metrics: Record<string, number>;
  notes: string;
}

export interface Bench {
  name: string;
  /** What it measures, for `run.ts --list`. */
  summary: string;
  /** Metrics shown in the README table. */
  keyMetrics: string[];
  run(ctx: BenchContext): Promise<BenchOutcome>;
}

/** "load 1.2/0.9" (1 and 5 minute load averages): how busy the shared machine was. */
export function loadNote(): string {
  const [one, five] = loadavg();
  return `load average ${one!.toFixed(1)}/${five!.toFixed(1)} (1/5 min)`;
}

export function timestampDir(): string {
  return new Date().toISOString().replace(/[:.]/g, '-');
}
