export type {
  ChatMessage,
  FeedbackInput,
  FeedbackKind,
  FeedbackSource,
  ImplicitSignal,
  InteractionInput,
  Usage,
} from '@ratchet/core';
export { type ChatCompletionChunkLike, ChatStreamAssembler, RatchetError } from '@ratchet/core';
export { Ratchet, type RatchetOptions, type WriteResult } from './client.js';
export {
  RatchetApiError,
  RatchetDeliveryError,
  RatchetFlushError,
  RatchetQueueFullError,
  RatchetSdkError,
} from './errors.js';
export {
  FEEDBACK_TOKEN_HEADER,
  feedbackTokenOf,
  INTERACTION_ID_HEADER,
  interactionIdOf,
  type OpenAIClientLike,
  type RatchetResultInfo,
  ratchetFeedbackToken,
  ratchetInteractionId,
  type WrapOpenAIOptions,
  wrapOpenAI,
} from './openai.js';
export { backoffDelay, isRetryableStatus, parseRetryAfter, type RetryPolicy } from './transport.js';
