import { type FormEvent, useEffect, useState } from 'react';
import { ApiError, api, type Me, session } from './api.js';
import { AnalysisPage } from './pages/Analysis.js';
import { DatasetsPage } from './pages/Datasets.js';
import { ExplorerPage } from './pages/Explorer.js';
import { InteractionPage } from './pages/InteractionView.js';
import { LoopPage } from './pages/Loop.js';
import { MembersPage } from './pages/Members.js';
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
  ['members', 'Members'],
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
    case 'members':
      return <MembersPage />;
    default:
      return <OverviewPage />;
  }
}

interface SessionView {
  project: { name: string };
  role: Exclude<Me['role'], null>;
  user: { email: string };
  raterId: string;
  csrfToken: string;
}

const roleScopes: Record<Exclude<Me['role'], null>, string[]> = {
  // What each role stands for, as the server's map (core rolesOfScope) has it; only for hiding.
  owner: ['read', 'admin', 'ingest'],
  admin: ['read', 'admin', 'ingest'],
  annotator: ['read'],
  viewer: ['read'],
};

function personOf(view: SessionView): Me {
  session.setCsrf(view.csrfToken);
  return {
    project: view.project.name,
    role: view.role,
    scopes: roleScopes[view.role],
    email: view.user.email,
    raterId: view.raterId,
  };
}

async function keyHolder(key?: string): Promise<Me> {
  const got = await api<{ project: { name: string }; scopes: string[] }>('/project', key ? { key } : {});
  return { project: got.project.name, role: null, scopes: got.scopes, email: null, raterId: null };
}

/**
 * Sign in as a person (email and password, or SSO when the server has it), or as an operator
 * with the project's secret key (kept in this tab's sessionStorage only).
 */
function SignIn({ onSignedIn }: { onSignedIn: (me: Me) => void }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [key, setKey] = useState('');
  const [error, setError] = useState('');
  const [sso, setSso] = useState(false);
  useEffect(() => {
    api<{ sso: boolean }>('/auth/config').then(
      (c) => setSso(c.sso),
      () => setSso(false),
    );
  }, []);
  const withPassword = async (e: FormEvent) => {
    e.preventDefault();
    try {
      const view = await api<SessionView>('/session', { body: { email, password }, key: '' });
      onSignedIn(personOf(view));
    } catch (err) {
      setError(`Sign-in failed: ${(err as Error).message}`);
    }
  };
  const withKey = async (e: FormEvent) => {
    e.preventDefault();
    try {
      const who = await keyHolder(key.trim());
      session.signIn(key.trim());
      onSignedIn(who);
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
      <form onSubmit={withPassword} aria-label="Sign in with your account">
        <label htmlFor="email">Email</label>
        <input
          id="email"
          type="email"
          autoComplete="username"
          value={email}
          onChange={(e) => setEmail(e.target.value)}
          required
        />
        <label htmlFor="password">Password</label>
        <input
          id="password"
          type="password"
          autoComplete="current-password"
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          required
        />
        <button type="submit">Sign in</button>
      </form>
      {sso && (
        <p>
          <a href="/api/v1/auth/oidc/start">Sign in with SSO</a>
        </p>
      )}
      <form onSubmit={withKey} aria-label="Operators: use a project key">
        <label htmlFor="key">Project secret key</label>
        <input
          id="key"
          type="password"
          autoComplete="off"
          value={key}
          onChange={(e) => setKey(e.target.value)}
          required
        />
        <button type="submit">Use key</button>
      </form>
      {error && <p role="alert">{error}</p>}
    </main>
  );
}

export function App() {
  const route = useHashRoute();
  // With a key from this tab's session, the page renders (and starts its own requests) while
  // the key is checked; a key that no longer works signs out. Without one, the session cookie
  // (an HTTP-only cookie the page cannot read) is asked about.
  const [me, setMe] = useState<Me | null | 'checking'>('checking');
  useEffect(() => {
    const who = session.key() ? keyHolder() : api<SessionView>('/session').then(personOf);
    who.then(
      (m) => {
        session.setMe(m);
        setMe(m);
      },
      () => {
        session.signOut();
        setMe(null);
      },
    );
  }, []);
  if (me === 'checking') return null;
  if (!me)
    return (
      <SignIn
        onSignedIn={(m) => {
          session.setMe(m);
          setMe(m);
        }}
      />
    );
  const project = me.project;
  const current = route.split(/[/?]/)[0];
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header>
        <strong>Ratchet</strong> · {project}
        {me.role && (
          <span className="muted">
            {' '}
            · {me.email} ({me.role})
          </span>
        )}
        <button
          type="button"
          onClick={() => {
            if (!session.key()) void api('/session', { method: 'DELETE' }).catch(() => undefined);
            session.signOut();
            setMe(null);
          }}
        >
          Sign out
        </button>
      </header>
      <nav aria-label="Pages">
        <ul>
          {pages
            .filter(([id]) => id !== 'members' || me.role !== null)
            .map(([id, label]) => (
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
