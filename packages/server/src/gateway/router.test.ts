import type { StoredRoute } from '@ratchet/store';
import { describe, expect, it } from 'vitest';
import { parseGatewayConfig } from './config.js';
import { assign, DatabaseRoutes } from './router.js';

const config = parseGatewayConfig({
  upstreams: { local: { baseURL: 'http://127.0.0.1:9/v1' } },
  routes: { support: { variants: [{ name: 'file', upstream: 'local', model: 'from-file', weight: 1 }] } },
});

const route = (name: string, model: string, upstream = 'local'): StoredRoute => ({
  projectId: 'p1',
  name,
  variants: [{ name: 'db', upstream, model, weight: 1 }],
  updatedAt: 0,
});

describe('database routes in the gateway', () => {
  it('take precedence over the file, per project, and refresh from the loader', async () => {
    let rows = [route('support', 'from-db')];
    let loads = 0;
    let fail = false;
    const errors: unknown[] = [];
    const routes = new DatabaseRoutes(
      async () => {
        loads++;
        if (fail) throw new Error('database down');
        return rows;
      },
      60_000,
      (err) => errors.push(err),
    );
    await routes.ready;
    expect(routes.loaded).toBe(true);
    expect(assign(config, 'support', 'u1', routes.lookup('p1', 'support'))?.model).toBe('from-db');
    expect(assign(config, 'support', 'u1', routes.lookup('p2', 'support'))?.model).toBe('from-file');
    // Lookups never load: only refresh does.
    for (let i = 0; i < 1000; i++) routes.lookup('p1', 'support');
    expect(loads).toBe(1);

    rows = [route('support', 'newer')];
    await routes.refresh();
    expect(routes.lookup('p1', 'support')![0]!.model).toBe('newer');
    // A failed load keeps what was there.
    fail = true;
    await routes.refresh();
    expect(routes.lookup('p1', 'support')![0]!.model).toBe('newer');
    expect(errors).toHaveLength(1);
    // A route whose variants all have weight 0 is ignored (the file applies).
    fail = false;
    rows = [
      { ...route('support', 'x'), variants: [{ name: 'db', upstream: 'local', model: 'x', weight: 0 }] },
    ];
    await routes.refresh();
    expect(routes.lookup('p1', 'support')).toBeUndefined();
    routes.close();
  });

  it('names a database variant whose upstream the file does not define', () => {
    expect(() =>
      assign(config, 'support', 'u1', [{ name: 'db', upstream: 'gone', model: 'm', weight: 1 }]),
    ).toThrow(/variant "db" names upstream "gone"/);
  });
});
