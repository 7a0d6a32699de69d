import { createHash, randomBytes } from 'node:crypto';
import { RatchetError, type VariantSegment } from '@ratchet/core';
import type { StoredRoute } from '@ratchet/store';
import type { FailoverConfig, GatewayConfig, UpstreamConfig, VariantConfig } from './config.js';

export interface Assignment {
  route: string | null;
  variant: string | null;
  upstreamName: string;
  upstream: UpstreamConfig;
  model: string;
  /** The route's retries and fallbacks, from the gateway file (database routes of its name too). */
  failover?: FailoverConfig;
}

/** A number in [0, 1) fixed by route and user, so a user keeps their variant across calls. */
export function stickyUnit(route: string, userKey: string): number {
  const digest = createHash('sha256').update(route).update('\u0000').update(userKey).digest();
  return digest.readUIntBE(0, 6) / 2 ** 48;
}

export function pickVariant(variants: readonly VariantConfig[], unit: number): VariantConfig {
  const total = variants.reduce((s, v) => s + v.weight, 0);
  let threshold = unit * total;
  for (const v of variants) {
    if (v.weight <= 0) continue;
    if (threshold < v.weight) return v;
    threshold -= v.weight;
  }
  return variants.filter((v) => v.weight > 0).at(-1)!;
}

/** What a call says about who it is for, matched against variants' segments. */
export interface CallSegmentInfo {
  tags?: readonly string[] | undefined;
  metadata?: Record<string, unknown> | undefined;
}

export function segmentMatches(segment: VariantSegment, call: CallSegmentInfo): boolean {
  if ('tag' in segment) return call.tags?.includes(segment.tag) ?? false;
  return call.metadata?.[segment.metadata] === segment.equals;
}

/**
 * The variants a call may get: those restricted to a segment it belongs to, if any has weight;
 * else the ones without a segment (the global model). Empty when neither has weight.
 */
export function eligibleVariants(variants: readonly VariantConfig[], call: CallSegmentInfo): VariantConfig[] {
  const positive = (vs: VariantConfig[]) => (vs.some((v) => v.weight > 0) ? vs : []);
  const mine = positive(variants.filter((v) => v.segment && segmentMatches(v.segment, call)));
  return mine.length > 0 ? mine : positive(variants.filter((v) => !v.segment));
}

/**
 * Resolves the `model` an application asked for: a route name is assigned a variant (sticky per
 * end user when one is known, random otherwise); any other name goes to the default upstream.
 * `databaseVariants`, when given, are the route's variants from the database (an experiment, or
 * per-segment adapters): they take precedence over the file's. Variants restricted to a segment
 * serve only the calls of that segment (`call`'s tags or metadata); a call of no segment that the
 * database route has no global variant for goes to the file's route.
 */
export function assign(
  config: GatewayConfig,
  requested: string,
  userKey: string | undefined,
  databaseVariants?: readonly VariantConfig[],
  call: CallSegmentInfo = {},
): Assignment | undefined {
  const fromFile = config.routes[requested]?.variants;
  let variants = databaseVariants && eligibleVariants(databaseVariants, call);
  if (!variants?.length && fromFile) variants = eligibleVariants(fromFile, call);
  if (databaseVariants && !variants?.length)
    throw new RatchetError(
      'not_found',
      `route "${requested}" has variants only for segments this call is not in, and the gateway file has no route "${requested}" for the rest`,
      'model',
    );
  if (variants?.length) {
    const variant = pickVariant(variants, stickyUnit(requested, userKey ?? randomBytes(8).toString('hex')));
    const upstream = config.upstreams[variant.upstream];
    if (!upstream)
      throw new RatchetError(
        'upstream_error',
        `route "${requested}": variant "${variant.name}" names upstream "${variant.upstream}", which the gateway file does not define`,
      );
    return {
      route: requested,
      variant: variant.name,
      upstreamName: variant.upstream,
      upstream,
      model: variant.model,
      ...(config.routes[requested]?.failover ? { failover: config.routes[requested].failover } : {}),
    };
  }
  if (config.defaultUpstream) {
    return {
      route: null,
      variant: null,
      upstreamName: config.defaultUpstream,
      upstream: config.upstreams[config.defaultUpstream]!,
      model: requested,
    };
  }
  return undefined;
}

/**
 * The routes kept in the database, held in memory: reloaded when `subscribe` says they changed
 * (the store's change feed: at once in this process, by LISTEN/NOTIFY between PostgreSQL
 * clients, by a short poll between processes on one SQLite file), on `refresh()`, and every
 * `refreshMs` as a last resort. A request only reads the map; it never waits on the database.
 * A failed load keeps the previous routes.
 */
export class DatabaseRoutes {
  private routes = new Map<string, VariantConfig[]>();
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  /** Resolved after the first load (successful or not). */
  readonly ready: Promise<void>;
  loaded = false;

  private readonly unsubscribe: (() => Promise<void>) | undefined;

  constructor(
    private readonly load: () => Promise<StoredRoute[]>,
    refreshMs = 2000,
    private readonly onError: (err: unknown) => void = () => {},
    subscribe?: (reload: () => Promise<void>) => () => Promise<void>,
  ) {
    this.ready = this.refresh().finally(() => {
      this.loaded = true;
    });
    this.timer = setInterval(() => void this.refresh(), refreshMs);
    this.timer.unref();
    this.unsubscribe = subscribe?.(() => this.refresh());
  }

  private static key(projectId: string, name: string): string {
    return `${projectId}\u0000${name}`;
  }

  /** The route's variants with a positive total weight, or undefined when the database has none. */
  lookup(projectId: string, name: string): VariantConfig[] | undefined {
    return this.routes.size === 0 ? undefined : this.routes.get(DatabaseRoutes.key(projectId, name));
  }

  /** The names of the project's database routes that serve (a positive weight). */
  names(projectId: string): string[] {
    const prefix = `${projectId}\u0000`;
    return [...this.routes.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  }

  /** Reloads now; concurrent callers share one load, and a call during a load waits for a fresh one. */
  async refresh(): Promise<void> {
    const previous = this.inFlight;
    const next = (async () => {
      await previous?.catch(() => {});
      try {
        const map = new Map<string, VariantConfig[]>();
        for (const r of await this.load()) {
          const variants = r.variants.map((v) => ({
            name: v.name,
            upstream: v.upstream,
            model: v.model,
            weight: v.weight,
            ...(v.segment ? { segment: v.segment } : {}),
          }));
          if (variants.some((v) => v.weight > 0)) map.set(DatabaseRoutes.key(r.projectId, r.name), variants);
        }
        this.routes = map;
      } catch (err) {
        this.onError(err);
      }
    })();
    this.inFlight = next;
    return next;
  }

  close(): void {
    clearInterval(this.timer);
    void this.unsubscribe?.().catch(this.onError);
  }
}
