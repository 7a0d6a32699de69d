export {
  type OpenAIResponsesDouble,
  type OpenAIResponsesDoubleOptions,
  startOpenAIResponsesDouble,
} from './openai-responses-double.js';
export { startTestServer, type TestServer } from './server.js';
export { type LocalUpstream, type LocalUpstreamOptions, startLocalUpstream } from './upstream.js';
