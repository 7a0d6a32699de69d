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

describe('SseChatStream.forwardsUnchanged', () => {
  const text = [
    event({ choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] }),
    event({ choices: [{ index: 0, delta: { content: 'the usage of "usage" in a word' } }] }),
    event({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }),
    'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}\n\n',
    'data: [DONE]\n\n',
  ].join('');
  const bytes = new TextEncoder().encode(text);
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);

  it('says yes only when push would hand back the same bytes, wherever the stream is cut', () => {
    for (let cut = 1; cut < bytes.length; cut++)
      for (const second of [cut + 1, Math.min(bytes.length, cut + 40), bytes.length]) {
        const sse = new SseChatStream(true);
        const pieces = [bytes.slice(0, cut), bytes.slice(cut, second), bytes.slice(second)];
        let out = '';
        for (const piece of pieces) {
          if (piece.length === 0) continue;
          const unchanged = sse.forwardsUnchanged(piece);
          const forwarded = sse.push(piece);
          if (unchanged) expect(forwarded, `cut at ${cut}/${second}`).toBe(decode(piece));
          out += forwarded;
        }
        out += sse.end();
        // However it was cut, the client gets the stream without the usage event.
        expect(out).toBe(text.replace(/data: \{"choices":\[\],"usage".*\n\n/, ''));
      }
  });

  it('lets whole lines without usage through, and holds back usage, open lines and a due blank line', () => {
    const sse = new SseChatStream(true);
    const first = new TextEncoder().encode(event({ choices: [{ index: 0, delta: { content: 'hi' } }] }));
    expect(sse.forwardsUnchanged(first)).toBe(true);
    sse.push(first);
    const usage = new TextEncoder().encode('data: {"choices":[],"usage":{"total_tokens":3}}\n');
    expect(sse.forwardsUnchanged(usage)).toBe(false);
    sse.push(usage);
    // The blank line that ends the dropped usage event is dropped too: not unchanged.
    expect(sse.forwardsUnchanged(new TextEncoder().encode('\n'))).toBe(false);
    const open = new TextEncoder().encode('data: {"choices"');
    expect(sse.forwardsUnchanged(open)).toBe(false);
    // Without stripping, every byte goes out as it came.
    expect(new SseChatStream(false).forwardsUnchanged(usage)).toBe(true);
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
