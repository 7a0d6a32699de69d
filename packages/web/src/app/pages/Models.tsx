import { useRef, useState } from 'react';
import { api } from '../api.js';
import { BarChart } from '../charts.js';
import { useApi } from '../hooks.js';
import type { Model } from '../types.js';
import { fmt, Loading, Page, Table } from '../ui.js';
import { type ExperimentSummary, Experiments } from './Experiments.js';

type Action = { kind: 'stage'; model: Model; stage: Model['stage'] } | { kind: 'rollback'; route: string };

function describe(a: Action): string {
  return a.kind === 'stage'
    ? `Move ${a.model.name} to ${a.stage}${a.stage === 'production' && a.model.route ? ` (replaces the current production model of ${a.model.route})` : ''}?`
    : `Roll back route ${a.route}: archive its production model and restore the one it replaced?`;
}

export function ModelsPage() {
  const models = useApi<{ items: Model[] }>('/models');
  const experiments = useApi<{ items: ExperimentSummary[] }>('/experiments');
  const evaluations = useApi<{ items: Record<string, unknown>[] }>('/evaluations');
  const [pending, setPending] = useState<Action>();
  const [reason, setReason] = useState('');
  const [status, setStatus] = useState('');
  const dialog = useRef<HTMLDialogElement>(null);

  const ask = (a: Action) => {
    setPending(a);
    setReason('');
    dialog.current?.showModal();
  };
  const confirm = async () => {
    if (!pending) return;
    try {
      if (pending.kind === 'stage')
        await api(`/models/${encodeURIComponent(pending.model.id)}/stage`, {
          body: { stage: pending.stage, reason },
        });
      else await api(`/routes/${encodeURIComponent(pending.route)}/rollback`, { body: { reason } });
      setStatus(`Done: ${describe(pending).replace(/\?$/, '')}.`);
      models.reload();
    } catch (err) {
      setStatus(`Refused: ${(err as Error).message}`);
    }
    dialog.current?.close();
    setPending(undefined);
  };
  const routes = [
    ...new Set((models.data?.items ?? []).filter((m) => m.stage === 'production').map((m) => m.route)),
  ];

  return (
    <Page title="Models and experiments">
      <p role="status" aria-live="polite">
        {status}
      </p>
      <Loading state={models} what="models">
        {(m) => (
          <Table
            caption="The model registry, newest first"
            head={['Model', 'Route', 'Stage', 'Base', 'Registered', 'Actions']}
            rows={m.items.map((x) => [
              x.name,
              x.route ?? '–',
              <span key="s" className={`stage ${x.stage}`}>
                {x.stage}
              </span>,
              x.baseModel,
              fmt.time(x.createdAt),
              <span key="a" className="controls">
                {(['canary', 'production', 'archived'] as const)
                  .filter((s) => s !== x.stage)
                  .map((s) => (
                    <button key={s} type="button" onClick={() => ask({ kind: 'stage', model: x, stage: s })}>
                      {s === 'production' ? 'Promote' : s === 'canary' ? 'Canary' : 'Archive'}
                      <span className="sr-only"> {x.name}</span>
                    </button>
                  ))}
              </span>,
            ])}
          />
        )}
      </Loading>
      {routes.map(
        (r) =>
          r && (
            <button key={r} type="button" onClick={() => ask({ kind: 'rollback', route: r })}>
              Roll back {r}
            </button>
          ),
      )}
      <dialog ref={dialog} aria-labelledby="confirm-title" onClose={() => setPending(undefined)}>
        <form
          method="dialog"
          onSubmit={(e) => {
            e.preventDefault();
            void confirm();
          }}
        >
          <h2 id="confirm-title">Confirm</h2>
          <p>{pending && describe(pending)}</p>
          <label htmlFor="reason">Reason (kept in the audit log)</label>
          <textarea id="reason" required value={reason} onChange={(e) => setReason(e.target.value)} />
          <div className="controls">
            <button type="submit">Confirm</button>
            <button type="button" onClick={() => dialog.current?.close()}>
              Cancel
            </button>
          </div>
        </form>
      </dialog>
      <h2>Experiments</h2>
      <Loading state={experiments} what="experiments">
        {(e) => <Experiments items={e.items} />}
      </Loading>
      <h2>Evaluation reports</h2>
      <Loading state={evaluations} what="evaluations">
        {(e) => <Reports items={e.items} what="evaluation" />}
      </Loading>
    </Page>
  );
}

/** Evaluation reports side by side: their numeric results as bars, the rest as text. */
function Reports({ items, what }: { items: Record<string, unknown>[]; what: string }) {
  if (!items.length) return <p className="muted">No {what}s yet.</p>;
  return (
    <div className="reports">
      {items.map((item, i) => {
        const name = String(item.name ?? item.id ?? `${what} ${i + 1}`);
        const numbers = Object.entries(flatten(item)).filter(([, v]) => typeof v === 'number') as [
          string,
          number,
        ][];
        return (
          <article key={name} aria-label={name}>
            <h3>{name}</h3>
            {'status' in item && <p>Status: {String(item.status)}</p>}
            {'decision' in item && <p>Decision: {JSON.stringify(item.decision)}</p>}
            <BarChart
              title={`${name}: results`}
              rows={numbers.slice(0, 20).map(([label, value]) => ({ label, value }))}
            />
          </article>
        );
      })}
    </div>
  );
}

function flatten(value: unknown, prefix = ''): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { [prefix]: value };
  return Object.assign(
    {},
    ...Object.entries(value).map(([k, v]) => flatten(v, prefix ? `${prefix}.${k}` : k)),
  ) as Record<string, unknown>;
}
