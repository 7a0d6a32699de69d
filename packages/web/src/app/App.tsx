import { type FormEvent, useEffect, useState } from 'react';
import { ApiError, api, session } from './api.js';
import { AnalysisPage } from './pages/Analysis.js';
import { DatasetsPage } from './pages/Datasets.js';
import { ExplorerPage } from './pages/Explorer.js';
import { InteractionPage } from './pages/InteractionView.js';
import { LoopPage } from './pages/Loop.js';
import { ModelsPage } from './pages/Models.js';
import { OverviewPage } from './pages/Overview.js';
import { QueuePage } from './pages/Queue.js';
import { RatersPage } from './pages/Raters.js';
import { RunsPage } from './pages/Runs.js';
import { TeamPage } from './pages/Team.js';
import { WhatChangedPage } from './pages/WhatChanged.js';

const pages = [
  ['overview', 'Overview'],
  ['explorer', 'Feedback explorer'],
  ['queue', 'Annotation queue'],
  ['team', 'Annotation team'],
  ['raters', 'Raters'],
  ['analysis', 'Error analysis'],
  ['datasets', 'Datasets'],
  ['runs', 'Runs'],
  ['models', 'Models and experiments'],
  ['loop', 'Loop'],
  ['what-changed', 'What changed'],
] as const;

function useHashRoute(): string {
  const [route, setRoute] = useState(() => location.hash.slice(2) || 'overview');
  useEffect(() => {
    const on = () => setRoute(location.hash.slice(2) || 'overview');
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return route;
}

function Content({ route }: { route: string }) {
  const [name, ...rest] = route.split('?')[0]!.split('/');
  if (name === 'interactions' && rest[0]) return <InteractionPage id={decodeURIComponent(rest.join('/'))} />;
  switch (name) {
    case 'explorer':
      return <ExplorerPage />;
    case 'queue':
      return <QueuePage />;
    case 'team':
      return <TeamPage />;
    case 'raters':
      return <RatersPage />;
    case 'analysis':
      return <AnalysisPage />;
    case 'datasets':
      return <DatasetsPage />;
    case 'runs':
      return <RunsPage />;
    case 'models':
      return <ModelsPage />;
    case 'loop':
      return <LoopPage />;
    case 'what-changed':
      return <WhatChangedPage />;
    default:
      return <OverviewPage />;
  }
}

/** Sign in with the project's secret key; it stays in this tab's sessionStorage only. */
function SignIn({ onSignedIn }: { onSignedIn: (project: string) => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState('');
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    try {
      const me = await api<{ project: { name: string } }>('/project', { key: key.trim() });
      session.signIn(key.trim());
      onSignedIn(me.project.name);
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 403
          ? 'That is a public key: the dashboard needs the project secret key (rk_sec_...).'
          : `Sign-in failed: ${(err as Error).message}`,
      );
    }
  };
  return (
    <main className="signin">
      <h1>Ratchet</h1>
      <form onSubmit={submit} aria-label="Sign in">
        <label htmlFor="key">Project secret key</label>
        <input
          id="key"
          type="password"
          autoComplete="off"
          value={key}
          onChange={(e) => setKey(e.target.value)}
          required
        />
        <button type="submit">Sign in</button>
        {error && <p role="alert">{error}</p>}
      </form>
    </main>
  );
}

export function App() {
  const route = useHashRoute();
  // With a key from this tab's session, the page renders (and starts its own requests) while
  // the key is checked; a key that no longer works signs out.
  const [project, setProject] = useState<string | null>(() => (session.key() ? '…' : null));
  useEffect(() => {
    if (!session.key()) return;
    api<{ project: { name: string } }>('/project').then(
      (me) => setProject(me.project.name),
      () => {
        session.signOut();
        setProject(null);
      },
    );
  }, []);
  if (!project) return <SignIn onSignedIn={setProject} />;
  const current = route.split(/[/?]/)[0];
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header>
        <strong>Ratchet</strong> · {project}
        <button
          type="button"
          onClick={() => {
            session.signOut();
            setProject(null);
          }}
        >
          Sign out
        </button>
      </header>
      <nav aria-label="Pages">
        <ul>
          {pages.map(([id, label]) => (
            <li key={id}>
              <a href={`#/${id}`} aria-current={current === id ? 'page' : undefined}>
                {label}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <main id="main" tabIndex={-1}>
        <Content key={route.split('?')[0]} route={route} />
      </main>
    </>
  );
}
