import { type FormEvent, useState } from 'react';
import { api, session } from '../api.js';
import { useApi } from '../hooks.js';
import { fmt, Loading, Page, Table } from '../ui.js';

interface Round {
  id: string;
  route: string;
  round: number;
  stage: string;
  status: string;
  error: string | null;
  createdAt: number;
  state: {
    production?: string;
    candidate?: string;
    gatePassed?: boolean;
    gateDecision?: 'pass' | 'fail' | 'undecided';
    gateReasons?: string[];
    decision?: string;
    decisionReasons?: string[];
    approval?: { approved: boolean; actor: string; reason: string | null };
  };
}

/** The loop's rounds, live; a round awaiting approval asks a person to approve or reject it. */
export function LoopPage() {
  const rounds = useApi<{ items: Round[] }>('/loop/rounds', 5000);
  const waiting = rounds.data?.items.filter((r) => r.status === 'awaiting_approval') ?? [];
  return (
    <Page title="Loop">
      {/* Approving a round promotes a model: admin and owner only (the server checks it too). */}
      {session.can('admin') &&
        waiting.map((r) => <ApprovalRequest key={r.id} round={r} onAnswered={rounds.reload} />)}
      <Loading state={rounds} what="loop rounds">
        {(d) => (
          <Table
            caption="Rounds, newest first"
            head={[
              'Route',
              'Round',
              'Stage',
              'Status',
              'Production',
              'Candidate',
              'Gate',
              'Experiment',
              'Started',
            ]}
            rows={d.items.map((r) => [
              r.route,
              r.round,
              r.stage,
              r.status === 'awaiting_approval' ? 'awaiting approval' : r.status,
              r.state.production ?? '',
              r.state.candidate ?? '',
              r.state.gateDecision ??
                (r.state.gatePassed === undefined ? '' : r.state.gatePassed ? 'pass' : 'fail'),
              [r.state.decision, r.state.approval && (r.state.approval.approved ? 'approved' : 'rejected')]
                .filter(Boolean)
                .join(', '),
              fmt.time(r.createdAt),
            ])}
          />
        )}
      </Loading>
    </Page>
  );
}

function ApprovalRequest({ round, onAnswered }: { round: Round; onAnswered: () => void }) {
  const [reason, setReason] = useState('');
  const [error, setError] = useState('');
  const answer = (verdict: 'approve' | 'reject') => async (e?: FormEvent) => {
    e?.preventDefault();
    setError('');
    try {
      await api(`/loop/rounds/${encodeURIComponent(round.id)}/${verdict}`, {
        body: reason.trim() ? { reason: reason.trim() } : {},
      });
      onAnswered();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  const label = `${round.route} round ${round.round}`;
  return (
    <section aria-label={`Approval for ${label}`} className="card">
      <h2>
        {label}: promote {round.state.candidate}?
      </h2>
      <p>
        The experiment decided <strong>{round.state.decision}</strong> against {round.state.production}
        {round.state.decisionReasons?.length ? ` (${round.state.decisionReasons.join('; ')})` : ''}. The
        policy asks a person before promoting; the experiment keeps its split until then.
      </p>
      <form onSubmit={answer('approve')}>
        <label htmlFor={`reason-${round.id}`}>Reason (required to reject)</label>
        <input
          id={`reason-${round.id}`}
          value={reason}
          onChange={(e) => setReason(e.target.value)}
          maxLength={2000}
        />
        <button type="submit">Approve</button>
        <button type="button" onClick={() => void answer('reject')()}>
          Reject
        </button>
      </form>
      {error && <p role="alert">{error}</p>}
    </section>
  );
}
