/**
 * Numerical integration against a Beta density, for exact (not Monte Carlo) posterior
 * probabilities and expectations.
 *
 * The interval is cut at quantiles of the Beta distributions involved, so each piece is smooth
 * and holds a known share of the mass: the density's peak and the integrand's steep step (where
 * another posterior's CDF moves) fall on piece boundaries. Points are held as pairs (x, 1 - x),
 * with the smaller one computed directly: a rate near 1 (all thumbs up) is then as precise as one
 * near 0, where 1 - x in floating point would have lost it. Below the median the pieces are
 * integrated in x, above it in 1 - x.
 */
import { betaPdf, betaQuantile, betaUpperQuantile } from './special.js';

/** A point of the unit interval as x and y = 1 - x, each accurate to its own magnitude. */
export interface UnitPoint {
  x: number;
  y: number;
}

export interface BetaParameters {
  alpha: number;
  beta: number;
}

const GAUSS_ORDER = 16;

/** Gauss-Legendre nodes and weights on [-1, 1] (Newton on the Legendre polynomial). */
function gaussLegendre(n: number): { nodes: number[]; weights: number[] } {
  const nodes: number[] = [];
  const weights: number[] = [];
  for (let i = 1; i <= n; i++) {
    let x = Math.cos((Math.PI * (i - 0.25)) / (n + 0.5));
    let dp = 0;
    for (let iter = 0; iter < 100; iter++) {
      let p0 = 1;
      let p1 = x;
      for (let k = 2; k <= n; k++) {
        const p2 = ((2 * k - 1) * x * p1 - (k - 1) * p0) / k;
        p0 = p1;
        p1 = p2;
      }
      dp = (n * (x * p1 - p0)) / (x * x - 1);
      const dx = p1 / dp;
      x -= dx;
      if (Math.abs(dx) < 1e-16) break;
    }
    nodes.push(x);
    weights.push(2 / ((1 - x * x) * dp * dp));
  }
  return { nodes, weights };
}

const RULE = gaussLegendre(GAUSS_ORDER);

/**
 * Tail probabilities whose quantiles cut the interval, on each side of the median: a decade apart
 * far out, where a density with a parameter below 1 is singular, closer near the bulk.
 */
const TAIL_LEVELS = [
  1e-15, 1e-14, 1e-13, 1e-12, 1e-11, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.005, 0.02, 0.05, 0.1,
  0.2, 0.3, 0.4,
];

// Quantiles cost tens of incomplete-beta evaluations each and the same posteriors come back
// (e.g. at every step of a quantile search), so the last few are kept.
const cache = new Map<string, UnitPoint[]>();

/** Cut points of a Beta distribution, ascending in x; the median is the middle one. */
export function betaCutPoints(dist: BetaParameters): UnitPoint[] {
  const key = `${dist.alpha},${dist.beta}`;
  let points = cache.get(key);
  if (!points) {
    const { alpha: a, beta: b } = dist;
    const lower = TAIL_LEVELS.map((p) => betaQuantile(p, a, b)).map((x) => ({ x, y: 1 - x }));
    const upper = TAIL_LEVELS.map((q) => betaUpperQuantile(q, a, b)).map((y) => ({ x: 1 - y, y }));
    // A singular end is integrated from the end itself (the substitution makes that exact).
    if (a < 1) lower[0] = { x: 0, y: 1 };
    if (b < 1) upper[0] = { x: 1, y: 0 };
    const median = betaQuantile(0.5, a, b);
    points = [...lower, { x: median, y: 1 - median }, ...upper.reverse()];
    if (cache.size >= 64) cache.delete(cache.keys().next().value!);
    cache.set(key, points);
  }
  return points;
}

/** Shifts points by d (x + d, y - d), e.g. for the CDF of a difference. */
export function shiftPoints(points: readonly UnitPoint[], d: number): UnitPoint[] {
  return points.map((p) => ({ x: p.x + d, y: p.y - d }));
}

/**
 * Gauss-Legendre over one piece, in x (left of the median) or in y (right of it). Where the
 * density is singular at the end (parameter k < 1, density ~ u^(k-1)), the piece is integrated in
 * s = u^k instead, where the density times du/ds is smooth: a plain rule on u^(k-1) is off by
 * percents even over pieces that hold a fraction of the mass.
 */
function integratePiece(
  from: UnitPoint,
  to: UnitPoint,
  inX: boolean,
  dist: BetaParameters,
  g: (p: UnitPoint) => number,
): { value: number; mass: number } {
  const u0 = inX ? from.x : to.y;
  const u1 = inX ? to.x : from.y;
  const k = inX ? dist.alpha : dist.beta;
  const power = Math.min(k, 1);
  const s0 = u0 ** power;
  const s1 = u1 ** power;
  const half = (s1 - s0) / 2;
  const mid = (s0 + s1) / 2;
  let value = 0;
  let mass = 0;
  for (let i = 0; i < GAUSS_ORDER; i++) {
    const s = mid + half * RULE.nodes[i]!;
    const u = power === 1 ? s : s ** (1 / power);
    if (!(u > 0)) continue;
    const p = inX ? { x: u, y: 1 - u } : { x: 1 - u, y: u };
    // du/ds = u / (power s) (1 when not substituted).
    const jacobian = power === 1 ? 1 : u / (power * s);
    const w = RULE.weights[i]! * betaPdf(p.x, dist.alpha, dist.beta, p.y) * jacobian;
    value += w * g(p);
    mass += w;
  }
  return { value: value * half, mass: mass * half };
}

/**
 * E[g(X)] for X ~ Beta(dist), g bounded and given the point as (x, 1 - x). `extraCuts` are points
 * where g changes quickly (e.g. quantiles of another posterior), added to the pieces.
 */
export function expectationOverBeta(
  dist: BetaParameters,
  g: (p: UnitPoint) => number,
  extraCuts: readonly UnitPoint[] = [],
): number {
  const own = betaCutPoints(dist);
  const median = own[TAIL_LEVELS.length]!;
  const first = own[0]!;
  const last = own.at(-1)!;
  const left = [...own.slice(0, TAIL_LEVELS.length + 1)];
  const right = [...own.slice(TAIL_LEVELS.length)];
  for (const c of extraCuts) {
    if (c.x > first.x && c.x < median.x) left.push(c);
    else if (c.x >= median.x && c.y > last.y && c.y < median.y) right.push(c);
  }
  left.sort((p, q) => p.x - q.x);
  right.sort((p, q) => q.y - p.y);
  let value = 0;
  let mass = 0;
  const add = (piece: { value: number; mass: number }) => {
    value += piece.value;
    mass += piece.mass;
  };
  for (let k = 0; k + 1 < left.length; k++) add(integratePiece(left[k]!, left[k + 1]!, true, dist, g));
  for (let k = 0; k + 1 < right.length; k++) add(integratePiece(right[k]!, right[k + 1]!, false, dist, g));
  // Dividing by the integrated mass cancels the error of the density's normalizing constant
  // (log B(a, b) loses ~1e-10 at a + b ~ 1e5) and the tails cut off beyond the outer quantiles.
  return value / mass;
}
