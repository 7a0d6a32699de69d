/**
 * The dashboard's one way to the API: a person signed in with the session cookie (the browser
 * sends it; writes add the session's CSRF token), or an operator's key from sessionStorage as a
 * bearer token.
 */
const KEY = 'ratchet.key';

/** Who is signed in and what they may do: the UI hides what the role may not (the server refuses it anyway). */
export interface Me {
  project: string;
  /** A person's role; null when signed in with a key. */
  role: 'owner' | 'admin' | 'annotator' | 'viewer' | null;
  /** What the key may do, or what the person's role stands for. */
  scopes: string[];
  email: string | null;
  /** The rater id a person's ratings carry (the server checks it). */
  raterId: string | null;
}

let csrfToken: string | null = null;
let me: Me | null = null;

export const session = {
  key: (): string | null => sessionStorage.getItem(KEY),
  signIn: (key: string) => sessionStorage.setItem(KEY, key),
  signOut: () => {
    sessionStorage.removeItem(KEY);
    csrfToken = null;
    me = null;
  },
  /** After a password or SSO sign-in: the token writes echo in x-ratchet-csrf. */
  setCsrf: (token: string) => {
    csrfToken = token;
  },
  setMe: (who: Me) => {
    me = who;
  },
  me: (): Me | null => me,
  /** Whether the signed-in key or person may make changes with the given scope (e.g. admin). */
  can: (scope: string): boolean => me?.scopes.includes(scope) ?? false,
};

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function api<T>(
  path: string,
  init: { method?: string; body?: unknown; key?: string } = {},
): Promise<T> {
  const key = init.key ?? session.key();
  const method = init.method ?? (init.body === undefined ? 'GET' : 'POST');
  const res = await fetch(`/api/v1${path}`, {
    method,
    headers: {
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...(!key && csrfToken && method !== 'GET' ? { 'x-ratchet-csrf': csrfToken } : {}),
      ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const body: unknown = await res.json().catch(() => null);
  if (!res.ok) {
    const error = (body as { error?: { message?: string } } | null)?.error;
    throw new ApiError(res.status, error?.message ?? `HTTP ${res.status}`);
  }
  return body as T;
}

/** Downloads an authenticated file (a dataset export) through a blob link. */
export async function download(path: string, filename: string): Promise<void> {
  const key = session.key();
  const res = await fetch(`/api/v1${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  if (!res.ok) throw new ApiError(res.status, `download failed: HTTP ${res.status}`);
  const url = URL.createObjectURL(await res.blob());
  const a = Object.assign(document.createElement('a'), { href: url, download: filename });
  a.click();
  URL.revokeObjectURL(url);
}

export function query(params: Record<string, string | number | undefined | null>): string {
  const entries = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== '');
  return entries.length ? `?${new URLSearchParams(entries.map(([k, v]) => [k, String(v)]))}` : '';
}
