import { z } from 'zod';
import { Weight } from './common.js';

/**
 * The requests a variant is restricted to (personalization): calls tagged `tag` (the
 * `x-ratchet-tags` header; `x-ratchet-segment: busy` adds the tag `segment:busy`), or calls whose
 * `x-ratchet-metadata` has `metadata` equal to `equals`. A call that matches no segment variant
 * goes to the route's variants without a segment (the global model). Declared once here: the
 * gateway file, the stored routes, experiments and the dashboard all read this shape.
 */
export const VariantSegment = z.union([
  z.strictObject({ tag: z.string().min(1).max(100) }),
  z.strictObject({
    metadata: z.string().min(1).max(100),
    equals: z.union([z.string(), z.number(), z.boolean()]),
  }),
]);
export type VariantSegment = z.output<typeof VariantSegment>;

/** A route's variant as a person writes it: in the gateway file or in PUT /api/v1/routes/:route. */
export const RouteVariantInput = z.strictObject({
  name: z.string().min(1).max(100),
  /** A gateway upstream (from the gateway file). */
  upstream: z.string().min(1),
  /** The model name sent upstream. */
  model: z.string().min(1),
  weight: Weight,
  segment: VariantSegment.optional(),
});

/** One of the variants a route serves (stored by the store, read by the gateway and the dashboard). */
export interface ServedVariant {
  name: string;
  /** A gateway upstream (from the gateway file). */
  upstream: string;
  /** The model name sent upstream. */
  model: string;
  weight: number;
  /** The registry model this variant serves, when it is one. */
  modelId?: string | null;
  /**
   * Only calls of this segment get this variant; calls of no segment go to the variants without
   * one. Experiments keep these.
   */
  segment?: VariantSegment;
}

/** What the gateway serves for a route (GET /api/v1/routes). */
export interface ServedRoute {
  name: string;
  variants: ServedVariant[];
  updatedAt: number;
}
