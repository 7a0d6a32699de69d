export { buildServer, type RatchetServer, type ServerOptions, version } from './app.js';
export { loadServerConfig, ServerConfig, type ServerConfigInput } from './config.js';
export {
  GatewayConfig,
  type GatewayConfigInput,
  gatewayFacts,
  loadGatewayConfig,
  parseGatewayConfig,
} from './gateway/config.js';
export type { Provider, ProviderFactory, UpstreamResponse } from './gateway/providers/types.js';
export { spanToInteraction } from './routes/otlp.js';
