import {
  type Model,
  modelStages,
  type PromotionWatchView as PromotionWatch,
  type ServedRoute,
} from '@ratchet/core';
import { useRef, useState } from 'react';
import { api, session } from '../api.js';
import { BarChart } from '../charts.js';
import { useApi } from '../hooks.js';
import { fmt, Loading, Page, Table } from '../ui.js';
import { type ExperimentSummary, Experiments } from './Experiments.js';
import { ProductionHealth } from './Health.js';

type Action = { kind: 'stage'; model: Model; stage: Model['stage'] } | { kind: 'rollback'; route: string };

function describe(a: Action): string {
  return a.kind === 'stage'
    ? `Move ${a.model.name} to ${a.stage}${a.stage === 'production' && a.model.route ? ` (replaces the current production model of ${a.model.route})` : ''}?`
    : `Roll back route ${a.route}: archive its production model and restore the one it replaced?`;
}

export function ModelsPage() {
  const models = useApi<{ items: Model[] }>('/models');
  // Polled: another process (the CLI, the loop, another server) may change what is served.
  const served = useApi<{ items: ServedRoute[] }>('/routes', 3000);
  const watches = useApi<{ items: PromotionWatch[] }>('/watches?looks=1', 5000);
  const experiments = useApi<{ items: ExperimentSummary[] }>('/experiments');
  const evaluations = useApi<{ items: Record<string, unknown>[] }>('/evaluations');
  const [pending, setPending] = useState<Action>();
  const [reason, setReason] = useState('');
  const [status, setStatus] = useState('');
  const dialog = useRef<HTMLDialogElement>(null);
  const canChange = session.can('admin');

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
      served.reload();
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
            head={['Model', 'Route', 'Stage', 'Base', 'Registered', 'Training data', 'Actions']}
            rows={m.items.map((x) => [
              x.name,
              x.route ?? '–',
              <span key="s" className={`stage ${x.stage}`}>
                {x.stage}
              </span>,
              x.baseModel,
              fmt.time(x.createdAt),
              x.dataDeletedAt ? (
                <span key="d" className="stage archived">
                  partly deleted {fmt.time(x.dataDeletedAt)}
                </span>
              ) : (
                'as built'
              ),
              <span key="a" className="controls">
                {modelStages
                  // Stage changes take the admin scope (owner, admin): not shown to others.
                  .filter((s) => canChange && s !== 'candidate' && s !== x.stage)
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
      <Loading state={served} what="served routes">
        {(r) => <Served routes={r.items} models={models.data?.items ?? []} />}
      </Loading>
      {routes.map(
        (r) =>
          r &&
          canChange && (
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
      <h2>Watches after promotion</h2>
      <Loading state={watches} what="watches">
        {(w) => <Watches items={w.items} />}
      </Loading>
      <h2>Production health</h2>
      <ProductionHealth />
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

/** A variant as the gateway sends it: model, upstream, share of its group's traffic. */
function variantText(v: ServedRoute['variants'][number], total: number): string {
  const share = total > 0 ? `${Math.round((v.weight / total) * 1000) / 10}%` : '0%';
  const who = v.segment
    ? ` (segment ${'tag' in v.segment ? v.segment.tag : `${v.segment.metadata}=${v.segment.equals}`})`
    : '';
  return `${v.model} @ ${v.upstream}: ${share}${who}`;
}

/** The total weight of the variants a call of `v`'s segment (or of no segment) is assigned among. */
function groupTotal(variants: ServedRoute['variants'], v: ServedRoute['variants'][number]): number {
  const key = JSON.stringify(v.segment ?? null);
  return variants.filter((w) => JSON.stringify(w.segment ?? null) === key).reduce((s, w) => s + w.weight, 0);
}

/**
 * Per route, what the gateway serves now (the `gateway_routes` entry every gateway reads) next to
 * the registry's production model, and whether they agree: a route whose traffic is split is in
 * an experiment; one with no entry goes to the gateway file's route.
 */
function Served({ routes, models }: { routes: ServedRoute[]; models: Model[] }) {
  const production = new Map(models.filter((m) => m.stage === 'production').map((m) => [m.route, m.name]));
  const names = [...new Set([...routes.map((r) => r.name), ...production.keys()])].filter(
    (n): n is string => n !== null,
  );
  const byName = new Map(routes.map((r) => [r.name, r]));
  return (
    <Table
      caption="What the gateway serves now, per route"
      head={['Route', 'Registry production', 'Gateway serves', 'Agree']}
      rows={names.sort().map((name) => {
        const entry = byName.get(name);
        const global = (entry?.variants ?? []).filter((v) => !v.segment);
        const live = global.filter((v) => v.weight > 0);
        const prod = production.get(name);
        const holdback = live.find((v) => v.name === 'holdback');
        const agree = !entry
          ? 'the gateway file routes it'
          : holdback && live.length === 2
            ? live.find((v) => v.name !== 'holdback')?.model === prod
              ? `yes (watched: ${holdback.model} kept as holdback)`
              : 'no'
            : live.length > 1
              ? 'split: an experiment'
              : live[0]?.model === prod
                ? 'yes'
                : 'no';
        return [
          name,
          prod ?? '–',
          entry ? (
            <ul key="v">
              {entry.variants.map((v) => (
                <li key={v.name}>{variantText(v, groupTotal(entry.variants, v))}</li>
              ))}
            </ul>
          ) : (
            "the gateway file's route"
          ),
          agree,
        ];
      })}
    />
  );
}

const p = (x: number | null) => (x === null ? '–' : x.toFixed(3));

/**
 * Each promotion's watch: the promoted model against the holdback it kept on the replaced model,
 * the last look's evidence per metric (mean of user means per arm, users, the always-valid
 * one-sided p and the level at which the guardrail acts) and how it ended.
 */
function Watches({ items }: { items: PromotionWatch[] }) {
  if (!items.length) return <p className="muted">No promotion has been watched yet.</p>;
  return (
    <div className="reports">
      {items.map((w) => {
        const look = w.looks[0];
        const label = `${w.route}: ${w.modelName} against ${w.holdbackModelName}`;
        return (
          <article key={w.id} aria-label={`watch ${label}`}>
            <h3>{label}</h3>
            <p>
              <span className={`stage ${w.status === 'rolled_back' ? 'archived' : 'production'}`}>
                {w.status}
              </span>{' '}
              holdback {Math.round(w.policy.holdbackShare * 1000) / 10}%, opened {fmt.time(w.openedAt)} by{' '}
              {w.openedBy}; length {w.policy.users} users and {w.policy.hours} h
            </p>
            {w.outcome && (
              <p>
                Decision by {w.outcome.actor}: {w.outcome.reason}
              </p>
            )}
            {w.webhook && (
              <p>
                Webhook {w.webhook.delivered ? 'delivered' : 'failed'} ({w.webhook.status ?? w.webhook.error})
                after {w.webhook.attempts.length} attempt{w.webhook.attempts.length === 1 ? '' : 's'}
              </p>
            )}
            {look ? (
              <Table
                caption={`Last look (${fmt.time(look.createdAt)}): ${look.decision}`}
                head={['Metric', 'New', 'Holdback', 'Users (new / holdback)', 'p (acts at)', 'Harm']}
                rows={(look.evidence.metrics ?? []).map((m) => [
                  m.metric,
                  p(m.newMean),
                  p(m.holdbackMean),
                  `${m.newUsers} / ${m.holdbackUsers}`,
                  m.skipped ?? `${m.pValue.toPrecision(3)} (${m.alpha.toPrecision(2)})`,
                  m.harmful ? 'yes' : 'no',
                ])}
              />
            ) : (
              <p className="muted">Not looked at yet.</p>
            )}
          </article>
        );
      })}
    </div>
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
