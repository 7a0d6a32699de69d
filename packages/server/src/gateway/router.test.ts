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

describe('per-segment variants', () => {
  const variants = [
    { name: 'global', upstream: 'local', model: 'global-model', weight: 1 },
    { name: 'busy', upstream: 'local', model: 'busy-adapter', weight: 1, segment: { tag: 'segment:busy' } },
    {
      name: 'pro',
      upstream: 'local',
      model: 'pro-adapter',
      weight: 1,
      segment: { metadata: 'plan', equals: 'pro' },
    },
  ];

  it("send a segment's calls to its variant and every other call to the global one", () => {
    for (let u = 0; u < 50; u++) {
      const user = `u${u}`;
      expect(assign(config, 'support', user, variants, { tags: ['segment:busy'] })?.model).toBe(
        'busy-adapter',
      );
      expect(assign(config, 'support', user, variants, { metadata: { plan: 'pro' } })?.model).toBe(
        'pro-adapter',
      );
      expect(
        assign(config, 'support', user, variants, { tags: ['other'], metadata: { plan: 'free' } })?.model,
      ).toBe('global-model');
      expect(assign(config, 'support', user, variants)?.model).toBe('global-model');
    }
  });

  it('fall back to the global variants when the segment variant has no weight', () => {
    const off = variants.map((v) => (v.name === 'busy' ? { ...v, weight: 0 } : v));
    expect(assign(config, 'support', 'u1', off, { tags: ['segment:busy'] })?.model).toBe('global-model');
  });

  it("send calls of no segment to the file's route when the database has only segment variants", () => {
    const onlyBusy = variants.filter((v) => v.name === 'busy');
    expect(assign(config, 'support', 'u1', onlyBusy, { tags: ['segment:busy'] })?.model).toBe('busy-adapter');
    expect(assign(config, 'support', 'u1', onlyBusy, {})?.model).toBe('from-file');
    expect(() => assign(config, 'elsewhere', 'u1', onlyBusy, {})).toThrow(/only for segments/);
  });

  it('are validated in the gateway file: a route needs a global variant', () => {
    expect(() =>
      parseGatewayConfig({
        upstreams: { local: { baseURL: 'http://127.0.0.1:9/v1' } },
        routes: { support: { variants: [variants[1]!] } },
      }),
    ).toThrow(/without a segment needs a positive weight/);
    expect(() =>
      parseGatewayConfig({
        upstreams: { local: { baseURL: 'http://127.0.0.1:9/v1' } },
        routes: { support: { variants: [variants[0]!, { ...variants[1]!, segment: { tag: '' } }] } },
      }),
    ).toThrow(/segment/);
  });

  it('survive the database refresh', async () => {
    const routes = new DatabaseRoutes(async () => [
      { projectId: 'p1', name: 'support', variants, updatedAt: 0 },
    ]);
    await routes.ready;
    const loaded = routes.lookup('p1', 'support')!;
    expect(assign(config, 'support', 'u1', loaded, { tags: ['segment:busy'] })?.model).toBe('busy-adapter');
    routes.close();
  });
});
