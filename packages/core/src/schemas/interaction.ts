import { z } from 'zod';
import { ClientId, Count, MAX_INT32, Metadata, Tags, Timestamp } from './common.js';

/**
 * A chat message as OpenAI-compatible APIs carry it. Content may be text, an array of parts, or
 * null (tool calls); unknown keys are kept, since providers add their own.
 */
export const ChatMessage = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([z.string(), z.array(z.looseObject({ type: z.string() })), z.null()]).optional(),
  name: z.string().optional(),
});
export type ChatMessage = z.infer<typeof ChatMessage>;

export const Usage = z.strictObject({
  inputTokens: Count.optional(),
  outputTokens: Count.optional(),
  totalTokens: Count.optional(),
});
export type Usage = z.infer<typeof Usage>;

/**
 * How the call ended: `aborted` is a stream its client closed early (a "stop" button); it is
 * logged with the output streamed so far and takes feedback like any other.
 */
export const InteractionStatus = z.enum(['ok', 'error', 'aborted']);
export type InteractionStatus = z.infer<typeof InteractionStatus>;

export const InteractionSource = z.enum(['api', 'gateway', 'otlp', 'import', 'sdk']);
export type InteractionSource = z.infer<typeof InteractionSource>;

/** One model call as an application reports it (`POST /api/v1/interactions`). */
export const InteractionInput = z.strictObject({
  /** Client-chosen id; makes the write idempotent. Generated when absent. */
  id: ClientId.optional(),
  route: z.string().min(1).max(200).optional(),
  model: z.string().min(1).max(200),
  variant: z.string().min(1).max(200).optional(),
  messages: z.array(ChatMessage).min(1).max(10_000),
  /** The model's answer: a message, or plain text taken as the assistant's content. */
  output: z.union([
    z.string().transform((content) => ({ role: 'assistant' as const, content })),
    ChatMessage,
  ]),
  parameters: Metadata.optional(),
  /** At most 2^31 - 1 ms (24 days): anything longer is a clock or unit error, not a latency. */
  latencyMs: z.number().nonnegative().max(MAX_INT32).optional(),
  usage: Usage.optional(),
  sessionId: z.string().min(1).max(200).optional(),
  userId: z.string().min(1).max(200).optional(),
  metadata: Metadata.optional(),
  tags: Tags.optional(),
  status: InteractionStatus.default('ok'),
  error: z.string().max(10_000).optional(),
  traceId: z.string().max(64).optional(),
  spanId: z.string().max(32).optional(),
  source: InteractionSource.default('api'),
  createdAt: Timestamp.optional(),
});
export type InteractionInput = z.input<typeof InteractionInput>;
export type ParsedInteraction = z.output<typeof InteractionInput>;

/** An interaction as the store returns it. */
export interface Interaction {
  id: string;
  projectId: string;
  route: string | null;
  model: string;
  variant: string | null;
  messages: ChatMessage[];
  output: ChatMessage;
  parameters: Record<string, unknown>;
  latencyMs: number | null;
  usage: Usage;
  sessionId: string | null;
  userId: string | null;
  metadata: Record<string, unknown>;
  tags: string[];
  status: InteractionStatus;
  error: string | null;
  traceId: string | null;
  spanId: string | null;
  source: InteractionSource;
  promptHash: string;
  createdAt: number;
  receivedAt: number;
}

export const InteractionFilters = z.strictObject({
  route: z.string().optional(),
  model: z.string().optional(),
  variant: z.string().optional(),
  userId: z.string().optional(),
  sessionId: z.string().optional(),
  tag: z.string().optional(),
  source: InteractionSource.optional(),
  from: Timestamp.optional(),
  to: Timestamp.optional(),
  /** Only interactions with a current rating by this rater. */
  raterId: z.string().min(1).max(200).optional(),
  /** Only interactions with this current rating: thumbs up/down or a star value (by `raterId` when given). */
  rating: z.enum(['up', 'down', '1', '2', '3', '4', '5']).optional(),
  /** Only interactions that have (true) or lack (false) current feedback. */
  hasFeedback: z
    .enum(['true', 'false'])
    .transform((v) => v === 'true')
    .optional(),
});
export type InteractionFilters = z.output<typeof InteractionFilters>;
