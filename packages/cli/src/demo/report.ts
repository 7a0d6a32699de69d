import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** One round of the demo as the report shows it. */
export interface DemoRound {
  round: number;
  production: string;
  /** The round's training recipe (the demo plants one risky round). */
  method: string;
  candidate: string;
  /** The candidate's true quality (oracle), measured after the round for the report only. */
  candidateQuality: number | null;
  trueQuality: number;
  goodShare: number;
  thumbsUp: number;
  thumbsTotal: number;
  thumbsUpLower: number;
  thumbsUpUpper: number;
  gate: string;
  experiment: string;
  /**
   * The canary: users with an outcome per arm when it ended, its plan (mixture, horizon), canary
   * chats the demo sent, and the decision's reasons. Absent when the round had no experiment.
   */
  canary?: {
    observations: Record<string, number> | null;
    plan: Record<string, number> | null;
    chats: number;
    reasons: string[];
  };
  outcome: string;
  seconds: number;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** A line chart as SVG: true quality and the observed thumbs-up rate (with its interval) per round. */
export function qualityChartSvg(rounds: readonly DemoRound[], final?: number): string {
  const W = 640;
  const H = 320;
  const pad = { left: 50, right: 20, top: 20, bottom: 40 };
  const points = rounds.length + (final === undefined ? 0 : 1);
  const x = (i: number) => pad.left + (i * (W - pad.left - pad.right)) / Math.max(1, points - 1);
  const y = (v: number) => pad.top + (1 - v) * (H - pad.top - pad.bottom);
  const truth = [...rounds.map((r) => r.trueQuality), ...(final === undefined ? [] : [final])];
  const line = (vals: number[]) =>
    vals.map((v, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  const observed = rounds.map((r) => r.thumbsUp / Math.max(1, r.thumbsTotal));
  const band = [
    ...rounds.map((r, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(r.thumbsUpUpper).toFixed(1)}`),
    ...[...rounds]
      .reverse()
      .map((r, k) => `L${x(rounds.length - 1 - k).toFixed(1)},${y(r.thumbsUpLower).toFixed(1)}`),
    'Z',
  ].join(' ');
  const grid = [0, 0.25, 0.5, 0.75, 1]
    .map(
      (v) =>
        `<line x1="${pad.left}" x2="${W - pad.right}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/><text x="${pad.left - 8}" y="${y(v) + 4}" text-anchor="end" font-size="11">${v * 100}%</text>`,
    )
    .join('');
  const labels = Array.from(
    { length: points },
    (_, i) =>
      `<text x="${x(i)}" y="${H - pad.bottom + 18}" text-anchor="middle" font-size="11">${i < rounds.length ? `round ${i + 1}` : 'after'}</text>`,
  ).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" role="img" aria-label="True quality and observed thumbs-up rate by round">
<rect width="100%" height="100%" fill="white"/>${grid}${labels}
<path d="${band}" fill="#f4a26133" stroke="none"/>
<path d="${line(observed)}" fill="none" stroke="#e76f51" stroke-width="2" stroke-dasharray="5 4"/>
<path d="${line(truth)}" fill="none" stroke="#2a9d8f" stroke-width="3"/>
<text x="${pad.left + 8}" y="${pad.top + 12}" font-size="12" fill="#2a9d8f">true quality of production (oracle)</text>
<text x="${pad.left + 8}" y="${pad.top + 28}" font-size="12" fill="#e76f51">observed thumbs-up rate, 95% interval</text>
</svg>
`;
}

/** Writes report.md and quality.svg; returns the report's path. */
export function writeDemoReport(
  dir: string,
  rounds: readonly DemoRound[],
  final: { name: string; trueQuality: number; goodShare: number },
): string {
  const out = resolve(dir);
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'quality.svg'), qualityChartSvg(rounds, final.trueQuality));
  const rows = rounds.map(
    (r) =>
      `| ${r.round} | ${r.production} | ${pct(r.trueQuality)} | ${pct(r.goodShare)} | ${r.candidate || '-'} (${r.method}) | ${r.candidateQuality === null ? '-' : pct(r.candidateQuality)} | ${pct(r.thumbsUp / Math.max(1, r.thumbsTotal))} [${pct(r.thumbsUpLower)}, ${pct(r.thumbsUpUpper)}] (${r.thumbsTotal}) | ${r.gate} | ${r.experiment} | ${r.outcome} | ${r.seconds} |`,
  );
  const md = [
    '# Ratchet demo report',
    '',
    `Generated ${new Date().toISOString()}. Each round: simulated users chat with the production model through the gateway and rate some answers; the loop calibrates the ratings, builds a dataset, trains a candidate, evaluates it against production, canaries it on live traffic and promotes it only if the experiment says it is better.`,
    '',
    'One round (the "risky" recipe, rwsft) deliberately tries rating-weighted SFT with full unlikelihood on disliked answers, a recipe that can wreck a small model, to show the gate and the experiment keeping a worse candidate out of production. The candidate columns give each candidate\'s true quality, measured after the round for this report only.',
    '',
    '"True quality" is the oracle: the share of answers that users, rating honestly and without noise, would like. The loop never sees it; users see only their own answers, and 10% of those who rate are adversaries.',
    '',
    '![quality by round](quality.svg)',
    '',
    '| round | production model | true quality | good on all axes | candidate (recipe) | candidate true quality | observed thumbs up [95% CI] (n) | gate | experiment | round outcome | seconds |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
    `After the last round production is **${final.name}**: true quality ${pct(final.trueQuality)}, good on all four axes ${pct(final.goodShare)}.`,
    '',
  ].join('\n');
  const path = join(out, 'report.md');
  writeFileSync(path, md);
  return path;
}
