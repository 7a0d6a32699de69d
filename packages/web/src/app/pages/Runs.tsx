import { useState } from 'react';
import { LineChart } from '../charts.js';
import { useApi } from '../hooks.js';
import { fmt, Loading, Page, Table } from '../ui.js';

interface Run {
  id: string;
  method: string;
  baseModel: string;
  status: string;
  progress: { step?: number; total?: number; loss?: number; eta?: number; etaSeconds?: number } | null;
  metrics: Record<string, [number, number][]> | null;
  createdAt: number;
  error?: string | null;
}

const active = (status: string) => status === 'queued' || status === 'running';

function progressText(r: Run): string {
  const p = r.progress ?? {};
  if (p.step === undefined) return r.status;
  return `${p.step}/${p.total ?? '?'}${p.loss !== undefined ? ` · loss ${fmt.num(p.loss, 3)}` : ''}`;
}

export function RunsPage() {
  const runs = useApi<{ items: Run[] }>('/runs', 5000);
  const [selected, setSelected] = useState<string>();
  return (
    <Page title="Training runs">
      <Loading state={runs} what="training runs">
        {(r) => (
          <Table
            caption="Training runs, newest first"
            head={['Run', 'Method', 'Base model', 'Status', 'Progress', 'Started', '']}
            rows={r.items.map((x) => [
              x.id,
              x.method,
              x.baseModel,
              x.status,
              progressText(x),
              fmt.time(x.createdAt),
              <button key="b" type="button" onClick={() => setSelected(x.id)} aria-label={`Show run ${x.id}`}>
                Show
              </button>,
            ])}
          />
        )}
      </Loading>
      {selected && <RunDetail id={selected} />}
    </Page>
  );
}

function RunDetail({ id }: { id: string }) {
  const [poll, setPoll] = useState(2000);
  const run = useApi<Run>(`/runs/${encodeURIComponent(id)}`, poll);
  if (run.data && !active(run.data.status) && poll) setPoll(0);
  return (
    <Loading state={run} what="run">
      {(r) => {
        const p = r.progress ?? {};
        const pct = p.step !== undefined && p.total ? p.step / p.total : null;
        return (
          <section aria-label={`Run ${r.id}`}>
            <h2>Run {r.id}</h2>
            <p>
              {r.status} · {progressText(r)}
              {(p.etaSeconds ?? p.eta) ? ` · about ${Math.round((p.etaSeconds ?? p.eta)!)} s left` : ''}
            </p>
            {pct !== null && (
              <progress max={1} value={pct} aria-label="Training progress">
                {fmt.pct(pct)}
              </progress>
            )}
            {r.error && <p role="alert">{r.error}</p>}
            {Object.entries(r.metrics ?? {}).map(([name, points]) => (
              <LineChart key={name} title={`${name} by step`} series={[{ name, points }]} />
            ))}
          </section>
        );
      }}
    </Loading>
  );
}
