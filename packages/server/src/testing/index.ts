export {
  type FailingUpstream,
  refusedURL,
  startBreakingStream,
  startSilentServer,
  startStallingServer,
} from './failing-upstreams.js';
export {
  type OpenAIResponsesDouble,
  type OpenAIResponsesDoubleOptions,
  startOpenAIResponsesDouble,
} from './openai-responses-double.js';
export {
  type ProviderDouble,
  type Received,
  sendJson,
  sendSse,
  startProviderDouble,
} from './provider-double.js';
export { startTestServer, type TestServer } from './server.js';
export { type LocalUpstream, type LocalUpstreamOptions, startLocalUpstream } from './upstream.js';
