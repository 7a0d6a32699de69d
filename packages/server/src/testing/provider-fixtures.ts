import type { ServerResponse } from 'node:http';
import type {
  ContentBlock,
  Message,
  RawMessageStreamEvent,
  StopReason,
} from '@anthropic-ai/sdk/resources/messages';
// Gemini's enums are values (string enums): the fixtures use them, so a renamed value fails too.
import { FinishReason, type GenerateContentResponse, type Part } from '@google/genai';
import type OpenAI from 'openai';
import { type Received, sendJson, sendSse } from './provider-double.js';

/**
 * What the test doubles of Anthropic, Azure OpenAI and Gemini answer (`provider-double.ts`
 * serves them): each provider's documented JSON and SSE bodies, typed against its official
 * SDK's types (@anthropic-ai/sdk, @google/genai, openai). Kept out of the test files, which tsc
 * does not compile, so that a change in a provider's documented format fails the type check.
 */

/** The same answer from every provider: "It is sunny." with 5 input and 3 output tokens. */
export const ANSWER = 'It is sunny.';

// --- Anthropic Messages (https://docs.anthropic.com/en/api/messages, .../messages-streaming) ---

/** A Message's usage with every field the API sends (the optional ones null, as it sends them). */
function anthropicUsage(input: number, output: number): Message['usage'] {
  return {
    input_tokens: input,
    output_tokens: output,
    cache_creation: null,
    cache_creation_input_tokens: null,
    cache_read_input_tokens: null,
    inference_geo: null,
    output_tokens_details: null,
    server_tool_use: null,
    service_tier: 'standard',
    speed: null,
  };
}

function anthropicMessage(content: ContentBlock[], stopReason: StopReason | null): Message {
  return {
    id: 'msg_01',
    type: 'message',
    role: 'assistant',
    model: 'claude-sonnet-4-5',
    content,
    container: null,
    diagnostics: null,
    stop_details: null,
    stop_reason: stopReason,
    stop_sequence: null,
    usage: anthropicUsage(5, 3),
  };
}

type AnthropicEvent = { event: string; data: RawMessageStreamEvent | { type: 'ping' } };

export function anthropicStream(blocks: AnthropicEvent[], stopReason: StopReason): AnthropicEvent[] {
  return [
    {
      event: 'message_start',
      data: {
        type: 'message_start',
        message: { ...anthropicMessage([], null), usage: anthropicUsage(5, 1) },
      },
    },
    { event: 'ping', data: { type: 'ping' } },
    ...blocks,
    {
      event: 'message_delta',
      data: {
        type: 'message_delta',
        delta: { stop_reason: stopReason, stop_sequence: null, stop_details: null, container: null },
        usage: {
          output_tokens: 3,
          input_tokens: null,
          cache_creation_input_tokens: null,
          cache_read_input_tokens: null,
          output_tokens_details: null,
          server_tool_use: null,
        },
      },
    },
    { event: 'message_stop', data: { type: 'message_stop' } },
  ];
}

const toolUse = {
  type: 'tool_use',
  id: 'toolu_01',
  name: 'get_weather',
  caller: { type: 'direct' },
} as const;

function anthropicAnswer(req: Received, res: ServerResponse) {
  const tools = Array.isArray(req.body.tools) && req.body.tool_choice !== undefined;
  if (!req.body.stream) {
    if (tools)
      return sendJson(res, 200, anthropicMessage([{ ...toolUse, input: { city: 'Paris' } }], 'tool_use'));
    return sendJson(
      res,
      200,
      anthropicMessage([{ type: 'text', text: ANSWER, citations: null }], 'end_turn'),
    );
  }
  if (tools)
    return sendSse(
      res,
      anthropicStream(
        [
          {
            event: 'content_block_start',
            data: {
              type: 'content_block_start',
              index: 0,
              content_block: { ...toolUse, input: {} },
            },
          },
          {
            event: 'content_block_delta',
            data: {
              type: 'content_block_delta',
              index: 0,
              delta: { type: 'input_json_delta', partial_json: '{"city": ' },
            },
          },
          {
            event: 'content_block_delta',
            data: {
              type: 'content_block_delta',
              index: 0,
              delta: { type: 'input_json_delta', partial_json: '"Paris"}' },
            },
          },
          { event: 'content_block_stop', data: { type: 'content_block_stop', index: 0 } },
        ],
        'tool_use',
      ),
    );
  return sendSse(
    res,
    anthropicStream(
      [
        {
          event: 'content_block_start',
          data: {
            type: 'content_block_start',
            index: 0,
            content_block: { type: 'text', text: '', citations: null },
          },
        },
        {
          event: 'content_block_delta',
          data: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'It is ' } },
        },
        {
          event: 'content_block_delta',
          data: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'sunny.' } },
        },
        { event: 'content_block_stop', data: { type: 'content_block_stop', index: 0 } },
      ],
      'end_turn',
    ),
  );
}

// --- Azure OpenAI (OpenAI's bodies at /openai/deployments/{deployment}/...?api-version=) ---

function azureAnswer(req: Received, res: ServerResponse) {
  const tools = Array.isArray(req.body.tools) && req.body.tool_choice !== undefined;
  const call: OpenAI.Chat.ChatCompletionMessageToolCall = {
    id: 'call_az',
    type: 'function',
    function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
  };
  const base = { id: 'chatcmpl-az', created: 1_700_000_000, model: 'gpt-4o-2024-11-20' };
  const usage: OpenAI.CompletionUsage = { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 };
  // Azure adds its content filter results to OpenAI's bodies; clients ignore them.
  type Filtered = { prompt_filter_results: unknown[] };
  if (!req.body.stream) {
    const completion: OpenAI.Chat.ChatCompletion & Filtered = {
      ...base,
      object: 'chat.completion',
      prompt_filter_results: [{ prompt_index: 0, content_filter_results: {} }],
      choices: [
        tools
          ? {
              index: 0,
              message: { role: 'assistant', content: null, refusal: null, tool_calls: [call] },
              finish_reason: 'tool_calls',
              logprobs: null,
            }
          : {
              index: 0,
              message: { role: 'assistant', content: ANSWER, refusal: null },
              finish_reason: 'stop',
              logprobs: null,
            },
      ],
      usage,
    };
    return sendJson(res, 200, completion);
  }
  const chunk = (
    choices: OpenAI.Chat.ChatCompletionChunk['choices'],
    extra: Partial<OpenAI.Chat.ChatCompletionChunk> = {},
  ): { data: OpenAI.Chat.ChatCompletionChunk } => ({
    data: { ...base, object: 'chat.completion.chunk', choices, ...extra },
  });
  return sendSse(res, [
    // Azure's first chunk carries the prompt's filter results and no choices.
    {
      data: {
        id: '',
        object: '',
        created: 0,
        model: '',
        choices: [],
        prompt_filter_results: [{ prompt_index: 0 }],
      },
    },
    chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]),
    ...(tools
      ? [
          chunk([
            {
              index: 0,
              delta: {
                tool_calls: [
                  {
                    index: 0,
                    id: 'call_az',
                    type: 'function',
                    function: { name: 'get_weather', arguments: '' },
                  },
                ],
              },
              finish_reason: null,
            },
          ]),
          chunk([
            {
              index: 0,
              delta: { tool_calls: [{ index: 0, function: { arguments: '{"city":"Paris"}' } }] },
              finish_reason: null,
            },
          ]),
          chunk([{ index: 0, delta: {}, finish_reason: 'tool_calls' }]),
        ]
      : [
          chunk([{ index: 0, delta: { content: 'It is ' }, finish_reason: null }]),
          chunk([{ index: 0, delta: { content: 'sunny.' }, finish_reason: null }]),
          chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]),
        ]),
    ...((req.body.stream_options as { include_usage?: boolean } | undefined)?.include_usage
      ? [chunk([], { usage })]
      : []),
    { data: '[DONE]' },
  ]);
}

// --- Google Gemini (https://ai.google.dev/api/generate-content) ---

/** What the wire carries of a GenerateContentResponse (the SDK's class adds getters). */
type GeminiWireResponse = Pick<
  GenerateContentResponse,
  'candidates' | 'usageMetadata' | 'modelVersion' | 'responseId'
>;

function geminiResponse(
  parts: Part[],
  finishReason: FinishReason | undefined,
  usage = true,
): GeminiWireResponse {
  return {
    candidates: [{ content: { role: 'model', parts }, ...(finishReason ? { finishReason } : {}), index: 0 }],
    ...(usage ? { usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 3, totalTokenCount: 8 } } : {}),
    modelVersion: 'gemini-2.5-flash',
    responseId: 'gem-1',
  };
}

function geminiAnswer(req: Received, res: ServerResponse) {
  const tools = Array.isArray(req.body.tools) && req.body.toolConfig !== undefined;
  const call: Part = { functionCall: { name: 'get_weather', args: { city: 'Paris' } } };
  if (req.path.includes(':generateContent'))
    return sendJson(
      res,
      200,
      tools
        ? geminiResponse([call], FinishReason.STOP)
        : geminiResponse([{ text: ANSWER }], FinishReason.STOP),
    );
  // Gemini's SSE separates events with \r\n\r\n.
  return sendSse(
    res,
    tools
      ? [{ data: geminiResponse([call], FinishReason.STOP) }]
      : [
          { data: geminiResponse([{ text: 'It is ' }], undefined) },
          { data: geminiResponse([{ text: 'sunny.' }], FinishReason.STOP) },
        ],
    '\r\n',
  );
}

export const doubles = {
  anthropic: { answer: anthropicAnswer, path: '/v1/messages', model: 'claude-sonnet-4-5' },
  azure: {
    answer: azureAnswer,
    path: '/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21',
    model: 'gpt-4o-prod',
  },
  gemini: {
    answer: geminiAnswer,
    path: '/v1beta/models/gemini-2.5-flash:generateContent',
    model: 'gemini-2.5-flash',
  },
} as const;
export type Kind = keyof typeof doubles;
export const kinds = Object.keys(doubles) as Kind[];
