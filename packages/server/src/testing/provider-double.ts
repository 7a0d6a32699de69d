import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Test doubles of providers that cannot be reached from the test machine (Anthropic, Azure
 * OpenAI, Gemini): real local HTTP servers that record what the gateway sent and answer with the
 * provider's documented JSON, SSE and error bodies, written by each test.
 */
export interface Received {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
}

export interface ProviderDouble {
  url: string;
  received: Received[];
  /** What the double answers next (the last answer given keeps being given). */
  answer(handler: (req: Received, res: ServerResponse) => void): void;
  close(): Promise<void>;
}

export async function startProviderDouble(): Promise<ProviderDouble> {
  const received: Received[] = [];
  let handler: (req: Received, res: ServerResponse) => void = (_req, res) => res.writeHead(500).end();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const r: Received = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: text ? JSON.parse(text) : {},
      };
      received.push(r);
      handler(r, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    answer(h) {
      handler = h;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/** SSE events as the provider sends them: `event:` lines when named, `data:` lines, a blank line each. */
export function sendSse(
  res: ServerResponse,
  events: { event?: string; data: unknown }[],
  newline = '\n',
): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (const e of events) {
    const data = typeof e.data === 'string' ? e.data : JSON.stringify(e.data);
    res.write(`${e.event ? `event: ${e.event}${newline}` : ''}data: ${data}${newline}${newline}`);
  }
  res.end();
}
