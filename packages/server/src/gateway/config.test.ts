import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadGatewayConfig, parseGatewayConfig } from './config.js';
import { assign, pickVariant, stickyUnit } from './router.js';

const example = join(fileURLToPath(import.meta.url), '../../../../../examples/gateway.yaml');

describe('gateway config', () => {
  it('loads the example file from the README', () => {
    const config = loadGatewayConfig(example);
    expect(Object.keys(config.routes)).toEqual(['support-bot']);
    expect(config.upstreams.openai?.apiKeyEnv).toBe('OPENAI_API_KEY');
    expect(config.upstreams.openai?.provider).toBe('openai-compatible');
    expect(config.upstreams.claude?.provider).toBe('anthropic');
    expect(config.routes['support-bot']?.failover).toEqual({
      retries: 1,
      backoffMs: 100,
      fallbacks: [{ upstream: 'claude', model: 'claude-sonnet-4-5' }],
    });
  });

  it.each([
    [
      {
        upstreams: {},
        routes: { r: { variants: [{ name: 'a', upstream: 'nope', model: 'm', weight: 1 }] } },
      },
      'routes.r.variants.0.upstream: unknown upstream "nope"',
    ],
    [{ upstreams: { u: { baseURL: 'not a url' } } }, 'upstreams.u.baseURL'],
    [
      {
        upstreams: { u: { baseURL: 'http://x/v1' } },
        routes: { r: { variants: [{ name: 'a', upstream: 'u', model: 'm', weight: 0 }] } },
      },
      'at least one variant needs a positive weight',
    ],
    [
      { upstreams: { u: { baseURL: 'http://x/v1' } }, defaultUpstream: 'v' },
      'defaultUpstream: unknown upstream "v"',
    ],
    [{ upstreams: { u: { baseURL: 'http://x/v1', retries: 3 } } }, 'upstreams.u'],
  ])('rejects a bad file with a message naming the field (%#)', (value, message) => {
    expect(() => parseGatewayConfig(value, 'gw.yaml')).toThrow(message);
  });
});

describe('variant assignment', () => {
  const variants = [
    { name: 'a', upstream: 'u', model: 'ma', weight: 80 },
    { name: 'off', upstream: 'u', model: 'mo', weight: 0 },
    { name: 'b', upstream: 'u', model: 'mb', weight: 20 },
  ];

  it('splits users by weight and never picks a zero-weight variant', () => {
    const counts: Record<string, number> = { a: 0, b: 0, off: 0 };
    for (let u = 0; u < 20_000; u++) counts[pickVariant(variants, stickyUnit('r', `user-${u}`)).name]!++;
    expect(counts.off).toBe(0);
    // 80/20 within 4 standard deviations of a binomial(20000, 0.2).
    expect(Math.abs(counts.b! - 4000)).toBeLessThan(4 * Math.sqrt(20_000 * 0.2 * 0.8));
  });

  it('is sticky per (route, user) and independent across routes', () => {
    expect(stickyUnit('r1', 'u')).toBe(stickyUnit('r1', 'u'));
    expect(stickyUnit('r1', 'u')).not.toBe(stickyUnit('r2', 'u'));
    const config = parseGatewayConfig({
      upstreams: { u: { baseURL: 'http://x/v1' } },
      routes: { r: { variants } },
    });
    const first = assign(config, 'r', 'same-user')!.variant;
    for (let i = 0; i < 10; i++) expect(assign(config, 'r', 'same-user')!.variant).toBe(first);
    expect(assign(config, 'unrouted', 'u')).toBeUndefined();
  });
});
