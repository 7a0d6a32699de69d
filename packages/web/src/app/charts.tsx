/** Small SVG charts: enough for time series, intervals and bars without a chart framework. */

const palette = ['#2563eb', '#d97706', '#059669', '#dc2626', '#7c3aed', '#0891b2'];

export interface Series {
  name: string;
  points: [number, number][];
}

function extent(values: number[]): [number, number] {
  if (!values.length) return [0, 1];
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return lo === hi ? [lo - 1, hi + 1] : [lo, hi];
}

/** A line chart of one or more series over a numeric x (time or step). */
export function LineChart({
  title,
  series,
  formatX = String,
  height = 180,
  dots = false,
}: {
  title: string;
  series: Series[];
  formatX?: (x: number) => string;
  height?: number;
  /** Mark each point (sparse series: a single point draws no line). */
  dots?: boolean;
}) {
  const width = 560;
  const pad = { l: 48, r: 12, t: 12, b: 28 };
  const all = series.flatMap((s) => s.points);
  const [x0, x1] = extent(all.map((p) => p[0]));
  const [y0raw, y1] = extent(all.map((p) => p[1]));
  const y0 = Math.min(0, y0raw);
  const sx = (x: number) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const sy = (y: number) => height - pad.b - ((y - y0) / (y1 - y0)) * (height - pad.t - pad.b);
  return (
    <figure className="chart">
      <svg role="img" aria-label={title} viewBox={`0 0 ${width} ${height}`} width="100%">
        <title>{title}</title>
        <line x1={pad.l} x2={width - pad.r} y1={sy(y0)} y2={sy(y0)} stroke="#999" />
        <text x={4} y={sy(y1) + 4} fontSize="10">
          {Number(y1.toPrecision(3))}
        </text>
        <text x={4} y={sy(y0)} fontSize="10">
          {Number(y0.toPrecision(3))}
        </text>
        <text x={pad.l} y={height - 8} fontSize="10">
          {all.length ? formatX(x0) : ''}
        </text>
        <text x={width - pad.r} y={height - 8} fontSize="10" textAnchor="end">
          {all.length ? formatX(x1) : ''}
        </text>
        {series.map((s, i) => (
          <polyline
            key={s.name}
            fill="none"
            stroke={palette[i % palette.length]}
            strokeWidth={2}
            points={s.points.map(([x, y]) => `${sx(x)},${sy(y)}`).join(' ')}
          />
        ))}
        {dots &&
          series.flatMap((s, i) =>
            s.points.map(([x, y]) => (
              <circle key={`${s.name}:${x}`} cx={sx(x)} cy={sy(y)} r={3} fill={palette[i % palette.length]} />
            )),
          )}
      </svg>
      <figcaption>
        {title}
        {series.map((s, i) => (
          <span key={s.name} className="legend" style={{ color: palette[i % palette.length] }}>
            ■ {s.name}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}

export interface IntervalRow {
  label: string;
  value: number;
  lower: number;
  upper: number;
  note?: string;
}

/** Estimates with their intervals, one row each, on a shared horizontal axis. */
export function IntervalChart({
  title,
  rows,
  domain,
}: {
  title: string;
  rows: IntervalRow[];
  domain: [number, number];
}) {
  const width = 560;
  const rowH = 26;
  const left = 170;
  const height = rows.length * rowH + 24;
  const sx = (v: number) => left + ((v - domain[0]) / (domain[1] - domain[0])) * (width - left - 120);
  return (
    <figure className="chart">
      <svg role="img" aria-label={title} viewBox={`0 0 ${width} ${height}`} width="100%">
        <title>{title}</title>
        {rows.map((r, i) => {
          const y = i * rowH + 16;
          return (
            <g key={r.label}>
              <text x={0} y={y + 4} fontSize="11">
                {r.label.length > 26 ? `${r.label.slice(0, 25)}…` : r.label}
              </text>
              <line x1={sx(r.lower)} x2={sx(r.upper)} y1={y} y2={y} stroke={palette[0]} strokeWidth={2} />
              <circle cx={sx(r.value)} cy={y} r={4} fill={palette[0]} />
              <text x={width - 110} y={y + 4} fontSize="11">
                {r.value.toFixed(2)} {r.note ?? ''}
              </text>
            </g>
          );
        })}
        <text x={sx(domain[0])} y={height - 2} fontSize="10">
          {domain[0]}
        </text>
        <text x={sx(domain[1])} y={height - 2} fontSize="10" textAnchor="end">
          {domain[1]}
        </text>
      </svg>
      <figcaption>{title}</figcaption>
    </figure>
  );
}

/** Horizontal bars (counts or shares). */
export function BarChart({ title, rows }: { title: string; rows: { label: string; value: number }[] }) {
  const width = 560;
  const rowH = 22;
  const left = 170;
  const max = Math.max(1e-9, ...rows.map((r) => Math.abs(r.value)));
  return (
    <figure className="chart">
      <svg role="img" aria-label={title} viewBox={`0 0 ${width} ${rows.length * rowH + 8}`} width="100%">
        <title>{title}</title>
        {rows.map((r, i) => (
          <g key={r.label}>
            <text x={0} y={i * rowH + 15} fontSize="11">
              {r.label.length > 26 ? `${r.label.slice(0, 25)}…` : r.label}
            </text>
            <rect
              x={left}
              y={i * rowH + 4}
              height={rowH - 8}
              width={(Math.abs(r.value) / max) * (width - left - 70)}
              fill={r.value < 0 ? palette[3] : palette[2]}
            />
            <text x={width - 64} y={i * rowH + 15} fontSize="11">
              {Number(r.value.toPrecision(3))}
            </text>
          </g>
        ))}
      </svg>
      <figcaption>{title}</figcaption>
    </figure>
  );
}

export interface DifferenceRow {
  label: string;
  difference: number;
  /** The Bayesian credible interval (thick) and the always-valid sequential interval (thin). */
  credible: { lower: number; upper: number };
  sequential: { lower: number; upper: number };
  /** Green when the treatment is better, red when worse, grey while inconclusive. */
  verdict: 'better' | 'worse' | 'inconclusive';
}

const verdictColour = { better: palette[2], worse: palette[3], inconclusive: '#6b7280' };

/** Treatment minus control per comparison, both intervals, against a zero line. */
export function DifferenceChart({ title, rows }: { title: string; rows: DifferenceRow[] }) {
  const width = 560;
  const rowH = 30;
  const left = 170;
  const right = 150;
  const height = rows.length * rowH + 26;
  const bound = Math.max(
    1e-9,
    ...rows
      .flatMap((r) => [r.credible.lower, r.credible.upper, r.sequential.lower, r.sequential.upper])
      .filter(Number.isFinite)
      .map(Math.abs),
  );
  const sx = (v: number) =>
    left + ((Math.max(-bound, Math.min(bound, v)) + bound) / (2 * bound)) * (width - left - right);
  return (
    <figure className="chart">
      <svg role="img" aria-label={title} viewBox={`0 0 ${width} ${height}`} width="100%">
        <title>{title}</title>
        <line x1={sx(0)} x2={sx(0)} y1={4} y2={height - 18} stroke="#999" strokeDasharray="3 3" />
        {rows.map((r, i) => {
          const y = i * rowH + 16;
          const colour = verdictColour[r.verdict];
          return (
            <g key={r.label}>
              <text x={0} y={y + 4} fontSize="11">
                {r.label.length > 26 ? `${r.label.slice(0, 25)}…` : r.label}
              </text>
              <line x1={sx(r.sequential.lower)} x2={sx(r.sequential.upper)} y1={y} y2={y} stroke={colour} />
              <line
                x1={sx(r.credible.lower)}
                x2={sx(r.credible.upper)}
                y1={y}
                y2={y}
                stroke={colour}
                strokeWidth={6}
                opacity={0.6}
              />
              <circle cx={sx(r.difference)} cy={y} r={4} fill={colour} />
              <text x={width - right + 8} y={y + 4} fontSize="11">
                {r.difference >= 0 ? '+' : ''}
                {Number(r.difference.toPrecision(3))} {r.verdict}
              </text>
            </g>
          );
        })}
        <text x={left} y={height - 4} fontSize="10">
          {Number((-bound).toPrecision(2))}
        </text>
        <text x={sx(0)} y={height - 4} fontSize="10" textAnchor="middle">
          0
        </text>
        <text x={width - right} y={height - 4} fontSize="10" textAnchor="end">
          +{Number(bound.toPrecision(2))}
        </text>
      </svg>
      <figcaption>
        {title}. Thick: credible interval; thin: always-valid interval; dot: observed difference.
      </figcaption>
    </figure>
  );
}

/** Probabilities (0..1) as bars, with the threshold a decision needs marked. */
export function ProbabilityChart({
  title,
  rows,
  threshold,
}: {
  title: string;
  rows: { label: string; value: number }[];
  threshold: number;
}) {
  const width = 560;
  const rowH = 22;
  const left = 170;
  const span = width - left - 70;
  const height = rows.length * rowH + 8;
  return (
    <figure className="chart">
      <svg role="img" aria-label={title} viewBox={`0 0 ${width} ${height}`} width="100%">
        <title>{title}</title>
        {rows.map((r, i) => (
          <g key={r.label}>
            <text x={0} y={i * rowH + 15} fontSize="11">
              {r.label.length > 26 ? `${r.label.slice(0, 25)}…` : r.label}
            </text>
            <rect x={left} y={i * rowH + 4} height={rowH - 8} width={span} fill="#e5e7eb" />
            <rect
              x={left}
              y={i * rowH + 4}
              height={rowH - 8}
              width={Math.max(0, Math.min(1, r.value)) * span}
              fill={r.value >= threshold ? palette[2] : palette[0]}
            />
            <text x={width - 64} y={i * rowH + 15} fontSize="11">
              {(r.value * 100).toFixed(1)}%
            </text>
          </g>
        ))}
        <line
          x1={left + threshold * span}
          x2={left + threshold * span}
          y1={0}
          y2={height}
          stroke={palette[3]}
          strokeDasharray="4 2"
        />
      </svg>
      <figcaption>
        {title}; the dashed line is the {(threshold * 100).toFixed(0)}% a ship decision needs.
      </figcaption>
    </figure>
  );
}

/** The normal density N(mean, sd²) at `points` x values from `from` to `to`. */
export function normalDensity(
  mean: number,
  sd: number,
  from: number,
  to: number,
  points = 120,
): [number, number][] {
  return Array.from({ length: points + 1 }, (_, i) => {
    const x = from + ((to - from) * i) / points;
    return [x, Math.exp(-0.5 * ((x - mean) / sd) ** 2) / (sd * Math.sqrt(2 * Math.PI))];
  });
}

export interface TimelineMark {
  t: number;
  kind: string;
  note: string;
}

/** Events along a time axis, one colour per kind (an experiment's decision at each look). */
export function Timeline({
  title,
  marks,
  colours,
}: {
  title: string;
  marks: TimelineMark[];
  colours: Record<string, string>;
}) {
  const width = 560;
  const height = 48;
  const pad = 12;
  const [t0, t1] = extent(marks.map((m) => m.t));
  const sx = (t: number) => pad + ((t - t0) / (t1 - t0)) * (width - 2 * pad);
  const kinds = [...new Set(marks.map((m) => m.kind))];
  return (
    <figure className="chart">
      <svg role="img" aria-label={title} viewBox={`0 0 ${width} ${height}`} width="100%">
        <title>{title}</title>
        <line x1={pad} x2={width - pad} y1={18} y2={18} stroke="#999" />
        {marks.map((m) => (
          <circle key={`${m.t}-${m.kind}`} cx={sx(m.t)} cy={18} r={6} fill={colours[m.kind] ?? '#6b7280'}>
            <title>{m.note}</title>
          </circle>
        ))}
        <text x={pad} y={height - 4} fontSize="10">
          {marks.length ? new Date(t0).toISOString().slice(5, 16).replace('T', ' ') : ''}
        </text>
        <text x={width - pad} y={height - 4} fontSize="10" textAnchor="end">
          {marks.length > 1 ? new Date(t1).toISOString().slice(5, 16).replace('T', ' ') : ''}
        </text>
      </svg>
      <figcaption>
        {title}
        {kinds.map((k) => (
          <span key={k} className="legend" style={{ color: colours[k] ?? '#6b7280' }}>
            ● {k}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}
