import type { AnalysisView as Analysis } from '@ratchet/core';
import { BarChart } from '../charts.js';
import { useReport } from '../hooks.js';
import { fmt, Loading, Page, Table } from '../ui.js';

export function AnalysisPage() {
  const analysis = useReport<Analysis>('/dashboard/analysis');
  return (
    <Page title="Error analysis">
      <Loading state={analysis} what="analysis">
        {(a) => (
          <>
            <h2>Complaint themes</h2>
            <p className="muted">
              From {a.negativeTexts} comments and corrections on answers that went badly.
            </p>
            <BarChart
              title="Share of complaints per theme"
              rows={a.themes.map((t) => ({ label: t.label, value: t.share }))}
            />
            {a.themes.map((t) => (
              <details key={t.label}>
                <summary>
                  {t.label} ({t.count}, {fmt.pct(t.share)})
                </summary>
                <ul>
                  {t.examples.map((e) => (
                    <li key={e.id}>{e.text}</li>
                  ))}
                </ul>
              </details>
            ))}
            <h2>Worst prompts</h2>
            <Table
              caption="Prompts with the lowest mean calibrated reward"
              head={['Prompt', 'Answers', 'Mean reward']}
              rows={a.worstPrompts.map((p) => [
                <a key="p" href={`#/interactions/${encodeURIComponent(p.exampleId)}`}>
                  {p.prompt.slice(0, 100)}
                </a>,
                p.n,
                fmt.num(p.meanReward),
              ])}
            />
          </>
        )}
      </Loading>
    </Page>
  );
}
