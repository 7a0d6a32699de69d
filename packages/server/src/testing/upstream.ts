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
  /**
   * Answer text for a request's choice `index` (`n > 1` asks for several); by default echoes the
   * last user message, with ` (choice N)` appended after the first choice.
   */
  answer?: (body: Record<string, unknown>, index: number) => string;
  /** Wait between streamed chunks (to let a client close a stream midway). */
  chunkDelayMs?: number;
  /** The ids `GET /models` lists (default `tiny-base`). */
  models?: string[];
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

interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** With `tools` (and `tool_choice` not `none`), every choice calls the first tool with the user's text. */
function toolCall(body: Record<string, unknown>, index: number): ToolCall | undefined {
  const tools = body.tools as { function?: { name?: string } }[] | undefined;
  const name = tools?.[0]?.function?.name;
  if (!name || body.tool_choice === 'none') return undefined;
  return {
    id: `call_${index}_0`,
    type: 'function',
    function: { name, arguments: JSON.stringify({ query: lastUserText(body), choice: index }) },
  };
}

/** Deterministic vectors (8 numbers, or `dimensions`) from each input's characters, as floats or base64. */
function embeddings(body: Record<string, unknown>) {
  const inputs = Array.isArray(body.input) ? body.input : [body.input];
  // Any other `dimensions` (a fuzzer's -1 or 1e9) gets the default rather than a crash or a huge answer.
  const asked = body.dimensions;
  const size =
    Number.isInteger(asked) && (asked as number) >= 1 && (asked as number) <= 4096 ? (asked as number) : 8;
  let tokens = 0;
  const data = inputs.map((input, index) => {
    const text = typeof input === 'string' ? input : JSON.stringify(input);
    tokens += text.split(/\s+/).filter(Boolean).length;
    const embedding = Array.from({ length: size }, (_, d) => {
      let h = d + 1;
      for (let c = 0; c < text.length; c++) h = (h * 31 + text.charCodeAt(c)) % 1000;
      return h / 1000;
    });
    // The openai npm client asks for base64 (little-endian float32s) and decodes it.
    if (body.encoding_format === 'base64')
      return {
        object: 'embedding',
        index,
        embedding: Buffer.from(new Float32Array(embedding).buffer).toString('base64'),
      };
    return { object: 'embedding', index, embedding };
  });
  return { object: 'list', data, model: body.model, usage: { prompt_tokens: tokens, total_tokens: tokens } };
}

/**
 * A real OpenAI-compatible HTTP server (chat completions with `n` choices and tool calls,
 * streaming and not; embeddings; the models list) that answers
 * instantly and deterministically: the upstream for gateway tests and the latency benchmark, so
 * that what is measured is the gateway, not a model.
 */
export async function startLocalUpstream(
  options: LocalUpstreamOptions = {},
  port = 0,
): Promise<LocalUpstream> {
  const requests: Record<string, unknown>[] = [];
  const received: LocalUpstream['received'] = [];
  const answer =
    options.answer ?? ((b, i) => `You said: ${lastUserText(b)}${i > 0 ? ` (choice ${i + 1})` : ''}`);
  const server: Server = createServer(async (req, res) => {
    if (options.record !== false)
      received.push({ path: req.url ?? '', authorization: req.headers.authorization });
    const path = (req.url ?? '').split('?')[0] ?? '';
    if (req.method === 'GET' && path.endsWith('/models')) {
      const data = (options.models ?? ['tiny-base']).map((id) => ({
        id,
        object: 'model',
        created: 1_700_000_000,
        owned_by: 'local',
      }));
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ object: 'list', data }));
      return;
    }
    const isChat = path.endsWith('/chat/completions');
    const isEmbeddings = path.endsWith('/embeddings');
    if (req.method !== 'POST' || !(isChat || isEmbeddings)) {
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
    if (isEmbeddings) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(embeddings(body)));
      return;
    }
    const n = typeof body.n === 'number' && body.n > 1 ? Math.min(body.n, 8) : 1;
    const texts = Array.from({ length: n }, (_, i) => answer(body, i));
    const calls = Array.from({ length: n }, (_, i) => toolCall(body, i));
    const id = `chatcmpl-${Date.now().toString(36)}`;
    const created = Math.floor(Date.now() / 1000);
    const completionTokens = texts.reduce((sum, text) => sum + text.split(/\s+/).length, 0);
    const usage = {
      prompt_tokens: lastUserText(body).split(/\s+/).length,
      completion_tokens: completionTokens,
      total_tokens: 0,
    };
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    if (body.stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const base = { id, object: 'chat.completion.chunk', created, model: body.model };
      const send = async (choices: unknown[]) => {
        if (res.destroyed) return;
        res.write(`data: ${JSON.stringify({ ...base, choices })}\n\n`);
        if (options.chunkDelayMs) await new Promise((r) => setTimeout(r, options.chunkDelayMs));
      };
      await send(
        texts.map((_, index) => ({
          index,
          delta: { role: 'assistant', content: calls[index] ? null : '' },
          finish_reason: null,
        })),
      );
      // The choices' deltas interleave, as OpenAI's do with n > 1.
      const pieces = texts.map((text, index) => (calls[index] ? [] : text.split(/(?<= )/)));
      for (let k = 0; k < Math.max(...pieces.map((p) => p.length)); k++) {
        for (let index = 0; index < n; index++) {
          const piece = pieces[index]![k];
          if (piece !== undefined) await send([{ index, delta: { content: piece }, finish_reason: null }]);
        }
      }
      for (let index = 0; index < n; index++) {
        const call = calls[index];
        if (!call) continue;
        // The name in one piece, the arguments in two: as OpenAI streams a tool call.
        const half = Math.ceil(call.function.arguments.length / 2);
        await send([
          {
            index,
            delta: {
              tool_calls: [
                {
                  index: 0,
                  id: call.id,
                  type: 'function',
                  function: { name: call.function.name, arguments: '' },
                },
              ],
            },
            finish_reason: null,
          },
        ]);
        await send([
          {
            index,
            delta: {
              tool_calls: [{ index: 0, function: { arguments: call.function.arguments.slice(0, half) } }],
            },
            finish_reason: null,
          },
        ]);
        await send([
          {
            index,
            delta: {
              tool_calls: [{ index: 0, function: { arguments: call.function.arguments.slice(half) } }],
            },
            finish_reason: null,
          },
        ]);
      }
      await send(
        texts.map((_, index) => ({ index, delta: {}, finish_reason: calls[index] ? 'tool_calls' : 'stop' })),
      );
      if (res.destroyed) return;
      const streamOptions = body.stream_options as { include_usage?: boolean } | undefined;
      if (streamOptions?.include_usage)
        res.write(`data: ${JSON.stringify({ ...base, choices: [], usage })}\n\n`);
      res.end('data: [DONE]\n\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        id,
        object: 'chat.completion',
        created,
        model: body.model,
        choices: texts.map((text, index) => {
          const call = calls[index];
          return call
            ? {
                index,
                message: { role: 'assistant', content: null, tool_calls: [call] },
                finish_reason: 'tool_calls',
              }
            : { index, message: { role: 'assistant', content: text }, finish_reason: 'stop' };
        }),
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
