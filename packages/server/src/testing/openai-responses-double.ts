import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type {
  Response,
  ResponseFunctionToolCall,
  ResponseOutputItem,
  ResponseOutputMessage,
  ResponseStreamEvent,
  ResponseUsage,
} from 'openai/resources/responses/responses';

/**
 * A test double of OpenAI's Responses API (`POST /v1/responses`, or Azure's
 * `/openai/v1/responses`), which cannot be reached from the test machine: a real local HTTP
 * server answering with the documented `response` object and stream events, typed against the
 * official `openai` package's types (so a change in the documented format fails tsc). Like the
 * real API it holds the conversation: a response is stored unless `store: false`, and
 * `previous_response_id` continues it (an unknown one is OpenAI's 400). Its answer says how many
 * user turns the conversation it saw has, so a test can tell that the upstream held it.
 */
export interface OpenAIResponsesDouble {
  /** The base URL, up to and including `/v1`. */
  url: string;
  /** Request bodies and paths received, newest last. */
  requests: { path: string; body: Record<string, unknown> }[];
  close(): Promise<void>;
}

export interface OpenAIResponsesDoubleOptions {
  /** Wait between streamed events (to let a client close a stream midway). */
  eventDelayMs?: number;
  /** Respond with this status and OpenAI's error body instead of an answer. */
  failWith?: (body: Record<string, unknown>) => number | undefined;
}

/** What the wire carries: the SDK adds `output_text` on the client side. */
type WireResponse = Omit<Response, 'output_text'>;

interface Turn {
  /** The conversation's user texts up to and including this turn. */
  userTexts: string[];
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function userTexts(input: unknown): string[] {
  if (typeof input === 'string') return [input];
  if (!Array.isArray(input)) return [];
  return input
    .filter((i) => i?.role === 'user')
    .map((i) =>
      typeof i.content === 'string'
        ? i.content
        : (i.content as { text?: string }[]).map((p) => p.text ?? '').join(''),
    );
}

const id = (prefix: string) => `${prefix}_${randomBytes(8).toString('hex')}`;

function error(status: number, message: string, param: string | null, code: string) {
  return { error: { message, type: 'invalid_request_error', param, code }, status };
}

export async function startOpenAIResponsesDouble(
  options: OpenAIResponsesDoubleOptions = {},
): Promise<OpenAIResponsesDouble> {
  const requests: OpenAIResponsesDouble['requests'] = [];
  const stored = new Map<string, Turn>();
  const server: Server = createServer(async (req, res) => {
    const path = (req.url ?? '').split('?')[0] ?? '';
    const json = (status: number, body: unknown) =>
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (req.method !== 'POST' || !path.endsWith('/v1/responses'))
      return json(404, error(404, 'not found', null, 'not_found'));
    const body = JSON.parse(await readBody(req)) as Record<string, unknown>;
    requests.push({ path: req.url ?? '', body });
    const status = options.failWith?.(body);
    if (status) return json(status, error(status, `upstream refused with ${status}`, null, 'test_failure'));
    const previousId = body.previous_response_id;
    const previous = typeof previousId === 'string' ? stored.get(previousId) : undefined;
    if (typeof previousId === 'string' && !previous)
      return json(
        400,
        error(
          400,
          `Previous response with id '${previousId}' not found.`,
          'previous_response_id',
          'previous_response_not_found',
        ),
      );
    const turn: Turn = { userTexts: [...(previous?.userTexts ?? []), ...userTexts(body.input)] };
    const text = `You said: ${turn.userTexts.at(-1) ?? ''} (turn ${turn.userTexts.length})`;
    const tools = Array.isArray(body.tools) ? (body.tools as { type?: string; name?: string }[]) : [];
    const tool = tools.find((t) => t.type === 'function');
    const callsTool = tool?.name !== undefined && body.tool_choice !== 'none';
    const responseId = id('resp');
    const message: ResponseOutputMessage = {
      type: 'message',
      id: id('msg'),
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', text, annotations: [], logprobs: [] }],
    };
    const call: ResponseFunctionToolCall = {
      type: 'function_call',
      id: id('fc'),
      call_id: id('call'),
      name: tool?.name ?? '',
      arguments: JSON.stringify({ query: turn.userTexts.at(-1) ?? '' }),
      status: 'completed',
    };
    const output: ResponseOutputItem[] = callsTool ? [call] : [message];
    const inputTokens = turn.userTexts.join(' ').split(/\s+/).length;
    const outputTokens = callsTool ? 5 : text.split(/\s+/).length;
    const usage: ResponseUsage = {
      input_tokens: inputTokens,
      input_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 },
      output_tokens: outputTokens,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: inputTokens + outputTokens,
    };
    const response = (status: 'in_progress' | 'completed', items: ResponseOutputItem[]): WireResponse => ({
      id: responseId,
      object: 'response',
      created_at: Math.floor(Date.now() / 1000),
      status,
      error: null,
      incomplete_details: null,
      instructions: typeof body.instructions === 'string' ? body.instructions : null,
      metadata: {},
      model: String(body.model),
      output: items,
      parallel_tool_calls: true,
      previous_response_id: typeof previousId === 'string' ? previousId : null,
      temperature: null,
      tool_choice: 'auto',
      tools: [],
      top_p: null,
      ...(status === 'completed' ? { usage } : {}),
    });
    if (body.store !== false) stored.set(responseId, turn);
    if (body.stream !== true) return json(200, response('completed', output));

    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    let sequence = 0;
    const send = async (event: ResponseStreamEvent) => {
      if (res.destroyed) return;
      res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
      if (options.eventDelayMs) await new Promise((r) => setTimeout(r, options.eventDelayMs));
    };
    const started = response('in_progress', []) as Response;
    await send({ type: 'response.created', sequence_number: sequence++, response: started });
    await send({ type: 'response.in_progress', sequence_number: sequence++, response: started });
    if (callsTool) {
      await send({
        type: 'response.output_item.added',
        sequence_number: sequence++,
        output_index: 0,
        item: { ...call, arguments: '', status: 'in_progress' },
      });
      const half = Math.ceil(call.arguments.length / 2);
      for (const delta of [call.arguments.slice(0, half), call.arguments.slice(half)])
        await send({
          type: 'response.function_call_arguments.delta',
          sequence_number: sequence++,
          item_id: call.id!,
          output_index: 0,
          delta,
        });
      await send({
        type: 'response.function_call_arguments.done',
        sequence_number: sequence++,
        item_id: call.id!,
        output_index: 0,
        name: call.name,
        arguments: call.arguments,
      });
      await send({
        type: 'response.output_item.done',
        sequence_number: sequence++,
        output_index: 0,
        item: call,
      });
    } else {
      const at = { item_id: message.id, output_index: 0, content_index: 0 };
      await send({
        type: 'response.output_item.added',
        sequence_number: sequence++,
        output_index: 0,
        item: { ...message, status: 'in_progress', content: [] },
      });
      await send({
        type: 'response.content_part.added',
        sequence_number: sequence++,
        ...at,
        part: { type: 'output_text', text: '', annotations: [], logprobs: [] },
      });
      for (const delta of text.split(/(?<= )/))
        await send({
          type: 'response.output_text.delta',
          sequence_number: sequence++,
          ...at,
          delta,
          logprobs: [],
        });
      await send({
        type: 'response.output_text.done',
        sequence_number: sequence++,
        ...at,
        text,
        logprobs: [],
      });
      await send({
        type: 'response.content_part.done',
        sequence_number: sequence++,
        ...at,
        part: message.content[0]!,
      });
      await send({
        type: 'response.output_item.done',
        sequence_number: sequence++,
        output_index: 0,
        item: message,
      });
    }
    await send({
      type: 'response.completed',
      sequence_number: sequence++,
      response: response('completed', output) as Response,
    });
    res.end();
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
