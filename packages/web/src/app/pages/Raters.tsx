import type { AnalysisView as Analysis, Rater } from '@ratchet/core';
import { BarChart } from '../charts.js';
import { useApi, useReport } from '../hooks.js';
import { fmt, Loading, Page, Table } from '../ui.js';

export function RatersPage() {
  const raters = useApi<{ items: Rater[] }>('/raters');
  const analysis = useReport<Analysis>('/dashboard/analysis');
  return (
    <Page title="Raters">
      <Loading state={raters} what="raters">
        {(r) => (
          <>
            <h2>Flagged raters</h2>
            <Table
              caption="Raters the calibration flagged, with the reason"
              head={['Rater', 'Source', 'Ratings', 'Reason', 'Influence']}
              rows={r.items
                .filter((x) => x.flagged)
                .map((x) => [x.id, x.source, x.feedbackCount, x.flagReason ?? '–', fmt.num(x.influence)])}
            />
            <h2>Bias and reliability</h2>
            <BarChart
              title="Rater bias (calibrated offset on the reward scale)"
              rows={r.items.filter((x) => x.bias !== null).map((x) => ({ label: x.id, value: x.bias! }))}
            />
            <Table
              caption="Every rater's calibration state"
              head={['Rater', 'Source', 'Ratings', 'Bias', 'Scale', 'Reliability', 'Noise sd', 'Consensus r']}
              rows={r.items.map((x) => [
                x.id,
                x.source,
                x.feedbackCount,
                fmt.num(x.bias),
                fmt.num(x.scale),
                fmt.num(x.reliability),
                fmt.num(x.noiseSd),
                fmt.num(x.consensusCorrelation),
              ])}
            />
          </>
        )}
      </Loading>
      <h2>Agreement per criterion</h2>
      <Loading state={analysis} what="agreement">
        {(a) => (
          <Table
            caption="Krippendorff's alpha between raters, per criterion"
            head={['Criterion', 'Level', 'Alpha', 'Raters', 'Items rated by 2+']}
            rows={Object.entries(a.agreement.criteria).map(([name, s]) => [
              name,
              s.level,
              fmt.num(s.alpha),
              s.raters,
              s.pairableUnits,
            ])}
          />
        )}
      </Loading>
    </Page>
  );
}
