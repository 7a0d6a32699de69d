import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface LocalUpstream {
  url: string;
  /** Requests received, newest last (bodies parsed). */
  requests: Record<string, unknown>[];
  /** Every request received, any path (404s included), with its Authorization header: who sent which key where. */
  received: { path: string; authorization: string | undefined }[];
  close(): Promise<void>;
}

export interface LocalUpstreamOptions {
  /** Answer text for a request; by default echoes the last user message. */
  answer?: (body: Record<string, unknown>) => string;
  /** Respond with this status and an OpenAI-style error instead of an answer. */
  failWith?: (body: Record<string, unknown>) => number | undefined;
  /** Keep request bodies (off for load tests). */
  record?: boolean;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function lastUserText(body: Record<string, unknown>): string {
  const messages = (body.messages as { role: string; content: unknown }[]) ?? [];
  const last = [...messages].reverse().find((m) => m.role === 'user');
  return typeof last?.content === 'string' ? last.content : '';
}

/**
 * A real OpenAI-compatible HTTP server (chat completions, streaming and not) that answers
 * instantly and deterministically: the upstream for gateway tests and the latency benchmark, so
 * that what is measured is the gateway, not a model.
 */
export async function startLocalUpstream(
  options: LocalUpstreamOptions = {},
  port = 0,
): Promise<LocalUpstream> {
  const requests: Record<string, unknown>[] = [];
  const received: LocalUpstream['received'] = [];
  const answer = options.answer ?? ((b) => `You said: ${lastUserText(b)}`);
  const server: Server = createServer(async (req, res) => {
    if (options.record !== false)
      received.push({ path: req.url ?? '', authorization: req.headers.authorization });
    if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error: { message: 'not found' } }));
      return;
    }
    const body = JSON.parse(await readBody(req)) as Record<string, unknown>;
    if (options.record !== false) requests.push(body);
    const status = options.failWith?.(body);
    if (status) {
      res.writeHead(status, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          error: {
            message: `upstream refused with ${status}`,
            type: 'invalid_request_error',
            code: 'test_failure',
          },
        }),
      );
      return;
    }
    const text = answer(body);
    const id = `chatcmpl-${Date.now().toString(36)}`;
    const created = Math.floor(Date.now() / 1000);
    const usage = {
      prompt_tokens: lastUserText(body).split(/\s+/).length,
      completion_tokens: text.split(/\s+/).length,
      total_tokens: 0,
    };
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    if (body.stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const base = { id, object: 'chat.completion.chunk', created, model: body.model };
      const words = text.split(/(?<= )/);
      res.write(
        `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] })}\n\n`,
      );
      for (const w of words) {
        res.write(
          `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: { content: w }, finish_reason: null }] })}\n\n`,
        );
      }
      res.write(
        `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`,
      );
      const options = body.stream_options as { include_usage?: boolean } | undefined;
      if (options?.include_usage) res.write(`data: ${JSON.stringify({ ...base, choices: [], usage })}\n\n`);
      res.end('data: [DONE]\n\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        id,
        object: 'chat.completion',
        created,
        model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
        usage,
      }),
    );
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const { port: actual } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${actual}/v1`,
    requests,
    received,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
