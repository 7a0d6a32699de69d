// The local OpenAI-compatible upstream as its own process, so that it shares no event loop with
// the gateway under test or the load generator. Prints {"url": ...} once listening.
import { startLocalUpstream } from '../../packages/server/src/testing/upstream.js';

const port = Number(process.argv[2] ?? 0);
const upstream = await startLocalUpstream({ record: false }, port);
console.log(JSON.stringify({ url: upstream.url }));
const stop = () => void upstream.close().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
