import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backTranslate, paraphrase } from './paraphrase.js';

// A real OpenAI-compatible HTTP endpoint whose "model" transforms text by rule, so the test
// sees exactly which prompts and texts went over the wire.
let server: Server;
let baseURL: string;
const seen: { system: string; user: string; auth: string | undefined }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const { messages, model } = JSON.parse(body);
      const system = messages[0].content as string;
      const user = messages[1].content as string;
      seen.push({ system, user, auth: req.headers.authorization });
      if (model === 'down') {
        res.writeHead(503).end('{"error":{"message":"busy"}}');
        return;
      }
      const out = system.includes('German')
        ? `DE(${user})`
        : system.includes('into English')
          ? user.replace(/^DE\((.*)\)$/, 'EN:$1')
          : `para:${user}`;
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ choices: [{ message: { role: 'assistant', content: out } }] }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('paraphrase and back-translation through an OpenAI-compatible endpoint', () => {
  it('paraphrases with the configured model and key', async () => {
    expect(await paraphrase('Where is my parcel?', { baseURL, model: 'm', apiKey: 'k1' })).toBe(
      'para:Where is my parcel?',
    );
    expect(seen.at(-1)).toMatchObject({ user: 'Where is my parcel?', auth: 'Bearer k1' });
  });

  it('back-translates through the pivot language', async () => {
    expect(await backTranslate('Where is my parcel?', { baseURL, model: 'm' })).toBe(
      'EN:Where is my parcel?',
    );
    expect(seen.at(-2)?.system).toContain('German');
  });

  it('reports an endpoint failure with its status', async () => {
    await expect(paraphrase('x', { baseURL, model: 'down' })).rejects.toThrow(/answered 503/);
  });
});
