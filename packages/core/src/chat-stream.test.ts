import { describe, expect, it } from 'vitest';
import { ChatStreamAssembler, SseChatStream } from './chat-stream.js';

const event = (chunk: unknown) => `data: ${JSON.stringify(chunk)}\n\n`;

describe('SseChatStream', () => {
  it('reassembles text whose UTF-8 bytes are split across network chunks', () => {
    const sse = new SseChatStream();
    const bytes = new TextEncoder().encode(event({ choices: [{ index: 0, delta: { content: 'café ☕' } }] }));
    const cut = bytes.indexOf(0xe2) + 1; // inside the three bytes of ☕
    sse.push(bytes.slice(0, cut));
    sse.push(bytes.slice(cut));
    sse.end();
    expect(sse.assembler.message().content).toBe('café ☕');
  });

  it('strips the usage-only event and usage on other chunks when asked, keeping everything else byte for byte', () => {
    const text = [
      event({ choices: [{ index: 0, delta: { content: 'hi' } }], usage: null }),
      'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}\r\n\r\n',
      'data: [DONE]\n\n',
    ].join('');
    const stripped = new SseChatStream(true);
    const out = stripped.push(text) + stripped.end();
    expect(out).toBe(`${event({ choices: [{ index: 0, delta: { content: 'hi' } }] })}data: [DONE]\n\n`);
    expect(stripped.assembler.usage).toEqual({ inputTokens: 2, outputTokens: 1, totalTokens: 3 });
    const kept = new SseChatStream(false);
    expect(kept.push(text) + kept.end()).toBe(text);
  });
});

describe('ChatStreamAssembler', () => {
  it('keeps interleaved choices apart, tool calls included', () => {
    const a = new ChatStreamAssembler();
    for (const index of [0, 1])
      a.add({
        choices: [
          {
            index,
            delta: {
              tool_calls: [
                {
                  index: 0,
                  id: `c${index}`,
                  type: 'function',
                  function: { name: 'get_weather', arguments: '' },
                },
              ],
            },
          },
        ],
      });
    for (const index of [0, 1])
      a.add({
        choices: [
          {
            index,
            delta: { tool_calls: [{ index: 0, function: { arguments: '{}' } }] },
            finish_reason: 'tool_calls',
          },
        ],
      });
    const choices = a.choices();
    expect(choices.map((c) => c.message.tool_calls)).toEqual([
      [{ id: 'c0', type: 'function', function: { name: 'get_weather', arguments: '{}' } }],
      [{ id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{}' } }],
    ]);
    expect(choices[0]?.message.content).toBeNull();
  });

  it('ignores hostile pieces: a huge tool-call index, non-object choices', () => {
    const a = new ChatStreamAssembler();
    a.add({
      choices: [
        null as never,
        { index: 0, delta: { tool_calls: [{ index: 1e9, function: { name: 'x' } }] } },
      ],
    });
    expect(a.message()).toEqual({ role: 'assistant', content: '' });
  });
});
