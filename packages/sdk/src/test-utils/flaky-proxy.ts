import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * How the proxy treats a request:
 * - `refuse`: answers the status without passing the request on (the server never sees it);
 * - `lose-answer`: passes it on, so the server commits it, then answers the status instead of
 *   the server's answer, as when a response is lost on the way back;
 * - `forward`: passes it on and relays the answer.
 */
export type ProxyMode = 'refuse' | 'lose-answer' | 'forward';

interface Fault {
  mode: Exclude<ProxyMode, 'forward'>;
  status: number;
  retryAfter?: string;
}

export interface ProxiedRequest {
  path: string;
  mode: ProxyMode;
  at: number;
  /** Items in the body's batch (1 for a single item). */
  items: number;
}

/** A real HTTP proxy in front of a Ratchet server that fails the requests a test tells it to. */
export interface FlakyProxy {
  url: string;
  requests: ProxiedRequest[];
  /** The next `count` requests fail as `mode` with `status` (503 by default). */
  failNext(count: number, mode: Fault['mode'], options?: { status?: number; retryAfter?: string }): void;
  /** Every request fails until `heal()`. */
  failAll(mode: Fault['mode'], options?: { status?: number }): void;
  heal(): void;
  close(): Promise<void>;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function batchSize(body: Buffer): number {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { items?: unknown[] };
    return Array.isArray(parsed.items) ? parsed.items.length : 1;
  } catch {
    return 0;
  }
}

export async function startFlakyProxy(target: string): Promise<FlakyProxy> {
  const faults: Fault[] = [];
  let always: Fault | undefined;
  const requests: ProxiedRequest[] = [];

  const server: Server = createServer(async (req, res) => {
    const body = await readBody(req);
    const fault = always ?? faults.shift();
    requests.push({
      path: req.url ?? '',
      mode: fault?.mode ?? 'forward',
      at: Date.now(),
      items: batchSize(body),
    });
    const failWith = (f: Fault) => {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (f.retryAfter !== undefined) headers['retry-after'] = f.retryAfter;
      res
        .writeHead(f.status, headers)
        .end(JSON.stringify({ error: { code: 'unavailable', message: `proxy says ${f.status}` } }));
    };
    if (fault?.mode === 'refuse') return failWith(fault);

    const forwarded = await fetch(target + (req.url ?? ''), {
      method: req.method,
      headers: {
        ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
        ...(req.headers['content-type'] ? { 'content-type': req.headers['content-type'] } : {}),
      },
      body: req.method === 'GET' || req.method === 'HEAD' ? undefined : body,
    });
    const answer = Buffer.from(await forwarded.arrayBuffer());
    if (fault?.mode === 'lose-answer') return failWith(fault);
    const headers: Record<string, string> = {};
    forwarded.headers.forEach((value, name) => {
      if (name !== 'content-length' && name !== 'transfer-encoding' && name !== 'connection')
        headers[name] = value;
    });
    res.writeHead(forwarded.status, headers).end(answer);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    failNext(count, mode, options = {}) {
      for (let i = 0; i < count; i++)
        faults.push({ mode, status: options.status ?? 503, retryAfter: options.retryAfter });
    },
    failAll(mode, options = {}) {
      always = { mode, status: options.status ?? 503 };
    },
    heal() {
      always = undefined;
      faults.length = 0;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
