import type { DeletionSummary as DeletionReport, InteractionDetail, Rater } from '@ratchet/core';
import { useRef, useState } from 'react';
import feedbackKinds from '../../feedback-kinds.json';
import { api, session } from '../api.js';
import { useApi } from '../hooks.js';
import { fmt, Loading, Page, Table, text } from '../ui.js';

/** What people call each kind (core's feedback-kinds.ts, written to feedback-kinds.json). */
const kindLabels = new Map(feedbackKinds.kinds.map((k) => [k.kind, k.label]));

function feedbackValue(f: InteractionDetail['feedback'][number]): string {
  if (f.kind === 'thumbs') return f.label ?? String(f.value);
  if (f.kind === 'stars') return `${f.value} ★`;
  if (f.kind === 'criteria') return JSON.stringify((f.data as { scores?: unknown } | null)?.scores ?? f.data);
  if (f.kind === 'preference') return `${f.label ?? ''} ${JSON.stringify(f.data ?? {})}`;
  return f.text ?? f.label ?? String(f.value ?? '');
}

export function InteractionPage({ id }: { id: string }) {
  const item = useApi<InteractionDetail>(`/interactions/${encodeURIComponent(id)}`);
  const raters = useApi<{ items: Rater[] }>('/raters');
  return (
    <Page title={`Interaction ${id}`}>
      <Loading state={item} what="interaction">
        {(i) => {
          const ids = new Set(i.feedback.map((f) => f.raterId));
          const who = (raters.data?.items ?? []).filter((r) => ids.has(r.id));
          return (
            <>
              <p>
                {fmt.time(i.createdAt)} · route {i.route ?? '–'} · model {i.model}
                {i.variant ? ` · variant ${i.variant}` : ''} · tags {i.tags.join(', ') || '–'}
              </p>
              <h2>Messages</h2>
              <ol className="messages">
                {[...i.messages, i.output].map((m, n) => (
                  // biome-ignore lint/suspicious/noArrayIndexKey: messages are an ordered list
                  <li key={n} className={n === i.messages.length ? 'answer' : ''}>
                    <strong>{n === i.messages.length ? 'answer' : m.role}:</strong> {text(m.content)}
                  </li>
                ))}
              </ol>
              <h2>Ratings and their history</h2>
              <Table
                caption="Every feedback event, newest first; the current one per rater and kind counts"
                head={['Time', 'Rater', 'Source', 'Kind', 'Value', 'Current']}
                rows={[...i.feedback]
                  .sort((a, b) => b.createdAt - a.createdAt)
                  .map((f) => [
                    fmt.time(f.createdAt),
                    f.raterId,
                    f.source,
                    kindLabels.get(f.kind) ?? f.kind,
                    feedbackValue(f),
                    f.current ? 'current' : 'superseded',
                  ])}
              />
              <h2>Calibration</h2>
              {i.reward ? (
                <p>
                  Calibrated reward {fmt.num(i.reward.reward)} (95% interval {fmt.num(i.reward.lower)} to{' '}
                  {fmt.num(i.reward.upper)}) from {i.reward.n} ratings; raw mean {fmt.num(i.reward.rawMean)}.
                </p>
              ) : (
                <p className="muted">Not calibrated yet.</p>
              )}
              <Table
                caption="The raters of this interaction"
                head={['Rater', 'Bias', 'Scale', 'Reliability', 'Flagged']}
                rows={who.map((r) => [
                  r.id,
                  fmt.num(r.bias),
                  fmt.num(r.scale),
                  fmt.num(r.reliability),
                  r.flagged ? `yes: ${r.flagReason ?? ''}` : 'no',
                ])}
              />
              <h2>Dataset membership</h2>
              <Table
                caption="Dataset versions that used this interaction"
                head={['Dataset', 'Version', 'Split']}
                rows={i.datasets.map((d) => [d.name, `v${d.version}`, d.split])}
              />
              {session.can('admin') && <DeleteData interactionId={i.id} userId={i.userId} />}
            </>
          );
        }}
      </Loading>
    </Page>
  );
}

type Deletion = { kind: 'interaction'; id: string } | { kind: 'end-user'; id: string };

/**
 * Deleting this interaction, or everything of its end user, after a confirmation: it cannot be
 * undone. The answer lists counts only (what the audit log keeps), never the deleted content.
 */
function DeleteData({ interactionId, userId }: { interactionId: string; userId: string | null }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [pending, setPending] = useState<Deletion>();
  const [status, setStatus] = useState('');
  const ask = (d: Deletion) => {
    setPending(d);
    dialog.current?.showModal();
  };
  const confirm = async () => {
    if (!pending) return;
    dialog.current?.close();
    const path =
      pending.kind === 'interaction'
        ? `/interactions/${encodeURIComponent(pending.id)}`
        : `/end-users/${encodeURIComponent(pending.id)}`;
    try {
      const r = await api<DeletionReport>(path, { method: 'DELETE' });
      const counts = Object.entries(r.counts)
        .filter(([, n]) => n > 0)
        .map(([what, n]) => `${what} ${n}`)
        .join(', ');
      const marked = r.models.length ? `; models marked: ${r.models.map((m) => m.name).join(', ')}` : '';
      setStatus(`Deleted: ${counts || 'nothing'}${marked}.`);
    } catch (err) {
      setStatus(`Refused: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  return (
    <>
      <h2>Delete</h2>
      <p className="muted">
        Removes the data everywhere Ratchet keeps it (feedback, dataset files); dataset versions and models
        that used it are marked. The audit log keeps counts, not content.
      </p>
      <div className="controls">
        <button type="button" onClick={() => ask({ kind: 'interaction', id: interactionId })}>
          Delete this interaction
        </button>
        {userId && (
          <button type="button" onClick={() => ask({ kind: 'end-user', id: userId })}>
            Delete all data of end user {userId}
          </button>
        )}
      </div>
      <p role="status" aria-live="polite">
        {status}
      </p>
      <dialog ref={dialog} aria-labelledby="delete-title" onClose={() => setPending(undefined)}>
        <form
          method="dialog"
          onSubmit={(e) => {
            e.preventDefault();
            void confirm();
          }}
        >
          <h2 id="delete-title">Delete for good?</h2>
          <p>
            {pending?.kind === 'end-user'
              ? `Every interaction, rating and record of end user ${pending.id}.`
              : `Interaction ${pending?.id} with its ratings.`}{' '}
            This cannot be undone.
          </p>
          <div className="controls">
            <button type="submit">Delete</button>
            <button type="button" onClick={() => dialog.current?.close()}>
              Cancel
            </button>
          </div>
        </form>
      </dialog>
    </>
  );
}
