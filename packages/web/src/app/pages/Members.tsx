import { type FormEvent, useState } from 'react';
import { api, session } from '../api.js';
import { useApi } from '../hooks.js';
import { fmt, Loading, Page, Table } from '../ui.js';

interface Member {
  id: string;
  email: string;
  role: string;
  hasPassword: boolean;
  createdAt: number;
}

const roles = ['owner', 'admin', 'annotator', 'viewer'] as const;

/** The project's people and their roles; an owner adds and removes them (the server checks it). */
export function MembersPage() {
  const members = useApi<{ items: Member[] }>('/members');
  const owner = session.me()?.role === 'owner';
  const [email, setEmail] = useState('');
  const [role, setRole] = useState<string>('annotator');
  const [password, setPassword] = useState('');
  const [status, setStatus] = useState('');
  const add = async (e: FormEvent) => {
    e.preventDefault();
    try {
      await api('/members', { body: { email, role, ...(password ? { password } : {}) } });
      setStatus(`Added ${email} as ${role}.`);
      setEmail('');
      setPassword('');
      members.reload();
    } catch (err) {
      setStatus(`Not added: ${(err as Error).message}`);
    }
  };
  const remove = async (m: Member) => {
    try {
      await api(`/members/${encodeURIComponent(m.id)}`, { method: 'DELETE' });
      setStatus(`Removed ${m.email}.`);
      members.reload();
    } catch (err) {
      setStatus(`Not removed: ${(err as Error).message}`);
    }
  };
  return (
    <Page title="Members">
      <Loading state={members} what="members">
        {(m) => (
          <Table
            caption="People in this project and their roles"
            head={
              owner
                ? ['Email', 'Role', 'Password', 'Added', 'Actions']
                : ['Email', 'Role', 'Password', 'Added']
            }
            rows={m.items.map((x) => [
              x.email,
              x.role,
              x.hasPassword ? 'yes' : 'SSO only',
              fmt.time(x.createdAt),
              ...(owner
                ? [
                    <button key="r" type="button" onClick={() => void remove(x)}>
                      Remove <span className="sr-only">{x.email}</span>
                    </button>,
                  ]
                : []),
            ])}
          />
        )}
      </Loading>
      {owner && (
        <form onSubmit={add} aria-label="Add a member">
          <label htmlFor="member-email">Member email</label>
          <input
            id="member-email"
            type="email"
            value={email}
            onChange={(e) => setEmail(e.target.value)}
            required
          />
          <label htmlFor="member-role">Role</label>
          <select id="member-role" value={role} onChange={(e) => setRole(e.target.value)}>
            {roles.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
          <label htmlFor="member-password">Password for a new account (empty: SSO only)</label>
          <input
            id="member-password"
            type="password"
            autoComplete="new-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            minLength={12}
          />
          <button type="submit">Add member</button>
        </form>
      )}
      <p role="status" aria-live="polite">
        {status}
      </p>
    </Page>
  );
}
