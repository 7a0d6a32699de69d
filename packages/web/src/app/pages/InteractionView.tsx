import { useApi } from '../hooks.js';
import type { InteractionDetail, Rater } from '../types.js';
import { fmt, Loading, Page, Table, text } from '../ui.js';

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
                    f.kind,
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
            </>
          );
        }}
      </Loading>
    </Page>
  );
}
