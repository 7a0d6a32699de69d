import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Upstreams that fail the ways failover must handle, as real local HTTP servers (a refused
 * connection, no answer, an answer that stalls, a stream that breaks), shared by every test of
 * the gateway's failover (chat, Responses, embeddings).
 */
export interface FailingUpstream {
  /** The base URL, up to and including `/v1`. */
  url: string;
  close(): Promise<void>;
}

async function listen(server: Server): Promise<FailingUpstream> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A real server that accepts calls and never answers them: the timeout's upstream. */
export async function startSilentServer(): Promise<FailingUpstream & { hits: () => number }> {
  let hits = 0;
  const server = createServer(() => {
    hits += 1;
  });
  return { ...(await listen(server)), hits: () => hits };
}

/** A server that sends its answer's head and first bytes, then stalls: the total timeout's upstream. */
export function startStallingServer(): Promise<FailingUpstream> {
  return listen(
    createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"id":"stalled","object":');
      });
    }),
  );
}

/** A port nothing listens on (a server opened there, then closed): connection refused. */
export async function refusedURL(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/v1`;
}

/** A chat stream that sends its first chunk and then breaks the connection. */
export function startBreakingStream(): Promise<FailingUpstream> {
  const chunk = {
    id: 'c1',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'm',
    choices: [{ index: 0, delta: { role: 'assistant', content: 'Half an ' }, finish_reason: null }],
  };
  return listen(
    createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: ${JSON.stringify(chunk)}\n\n`);
        setTimeout(() => res.socket?.destroy(), 50);
      });
    }),
  );
}
