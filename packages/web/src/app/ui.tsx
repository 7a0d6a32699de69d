import type { ReactNode } from 'react';
import type { Loaded } from './hooks.js';

export function Page({ title, children }: { title: string; children: ReactNode }) {
  return (
    <section aria-labelledby="page-title">
      <h1 id="page-title">{title}</h1>
      {children}
    </section>
  );
}

/** Loading, error and "not available yet" states around a loaded value. */
export function Loading<T>({
  state,
  what,
  children,
}: {
  state: Loaded<T>;
  what: string;
  children: (data: T) => ReactNode;
}) {
  if (state.data !== undefined)
    return (
      <>
        {state.computedAt ? (
          <p className="muted">
            As of {fmt.time(state.computedAt)}
            {state.computing ? '; a newer one is being computed' : ''}.
          </p>
        ) : null}
        {children(state.data)}
      </>
    );
  if (state.missing) return <p className="muted">No {what} yet.</p>;
  if (state.computing && !state.error)
    return <p className="muted">Computing {what} in the background; this page updates when it is ready.</p>;
  if (state.error)
    return (
      <p role="alert" className="error">
        Could not load {what}: {state.error}
      </p>
    );
  return <p className="muted">Loading {what}…</p>;
}

export function Table({ caption, head, rows }: { caption: string; head: string[]; rows: ReactNode[][] }) {
  return (
    <table>
      <caption>{caption}</caption>
      <thead>
        <tr>
          {head.map((h) => (
            <th key={h} scope="col">
              {h}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>
        {rows.length === 0 ? (
          <tr>
            <td colSpan={head.length} className="muted">
              Nothing yet.
            </td>
          </tr>
        ) : (
          rows.map((r, i) => (
            // biome-ignore lint/suspicious/noArrayIndexKey: rows are re-rendered whole
            <tr key={i}>
              {r.map((cell, j) => (
                // biome-ignore lint/suspicious/noArrayIndexKey: cells have no identity of their own
                <td key={j}>{cell}</td>
              ))}
            </tr>
          ))
        )}
      </tbody>
    </table>
  );
}

export const fmt = {
  time: (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 16),
  day: (ms: number) => new Date(ms).toISOString().slice(5, 10),
  num: (n: number | null | undefined, digits = 2) =>
    n === null || n === undefined ? '–' : n.toFixed(digits),
  pct: (n: number | null | undefined) => (n === null || n === undefined ? '–' : `${(n * 100).toFixed(0)}%`),
};

export function text(content: unknown): string {
  if (typeof content === 'string') return content;
  if (content === null || content === undefined) return '';
  return JSON.stringify(content);
}
