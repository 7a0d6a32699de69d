import { mulberry32 } from '@ratchet/core';
import { buildServer, loadServerConfig, parseGatewayConfig } from '@ratchet/server';
import { startLocalUpstream } from '@ratchet/server/testing';
import { Store } from '@ratchet/store';
import type { Command } from 'commander';
import { nonNegativeInteger } from '../arguments.js';
import { demoAnswer, sampleCalls, sampleRatings } from '../demo/sample.js';
import { progressBar } from '../progress.js';

export interface DemoOptions {
  databaseUrl?: string;
  port: number;
  calls: number;
  /** Load the sample and exit instead of serving (for smoke tests). */
  exit: boolean;
}

/**
 * Until the training loop lands, the demo is the capture side end to end: a demo model behind
 * the gateway, simulated users chatting through it and rating what they get, and a server left
 * running to look at.
 */
export async function runDemo(opts: DemoOptions): Promise<void> {
  const store = await Store.open(opts.databaseUrl ?? process.env.RATCHET_DATABASE_URL);
  const project = await store.projects.getOrCreate('demo');
  const secret = await store.projects.createKey(project.id, 'secret', 'demo');
  const pub = await store.projects.createKey(project.id, 'public', 'demo widget');

  const answers = mulberry32(11);
  const goodness = new Map<string, boolean>();
  const model = await startLocalUpstream({
    record: false,
    answer: (body) => {
      const messages = body.messages as { role: string; content: string }[];
      const question = messages.at(-1)?.content ?? '';
      const a = demoAnswer(question, answers);
      goodness.set(a.text, a.good);
      return a.text;
    },
  });
  const server = await buildServer({
    store,
    // Simulated users rate within seconds what real ones rate over days: a larger per-user burst.
    config: loadServerConfig({ port: opts.port, logLevel: 'warn', publicFeedbackBurst: 1000 }),
    gatewayConfig: parseGatewayConfig({
      upstreams: { 'demo-model': { baseURL: model.url } },
      routes: {
        'support-bot': {
          variants: [{ name: 'production', upstream: 'demo-model', model: 'demo-support-v1', weight: 1 }],
        },
      },
    }),
  });
  const url = await server.listen();
  const shutdown = async () => {
    await server.close();
    await model.close();
    await store.close();
  };

  try {
    const rand = mulberry32(3);
    const calls = sampleCalls(opts.calls);
    const bar = progressBar('simulated users', calls.length);
    let ratings = 0;
    for (const call of calls) {
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${secret.key}`,
          'content-type': 'application/json',
          'x-ratchet-tags': call.tags.join(','),
        },
        body: JSON.stringify({
          model: 'support-bot',
          messages: [{ role: 'user', content: call.question }],
          user: call.userId,
        }),
      });
      const body = (await res.json()) as { choices: { message: { content: string } }[] };
      const interactionId = res.headers.get('x-ratchet-interaction-id')!;
      // What the app hands its page so the user's browser can rate the answer with the public key.
      const feedbackToken = res.headers.get('x-ratchet-feedback-token')!;
      const text = body.choices[0]!.message.content;
      for (const rating of sampleRatings(
        { good: goodness.get(text) ?? false, question: call.question },
        call.userId,
        rand,
      )) {
        const fb = await fetch(`${url}/api/v1/feedback`, {
          method: 'POST',
          headers: { authorization: `Bearer ${pub.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ kind: rating.kind, interactionId, feedbackToken, ...rating.body }),
        });
        if (!fb.ok) throw new Error(`feedback failed: ${fb.status} ${await fb.text()}`);
        ratings++;
      }
      bar.increment();
    }
    bar.stop();
    await server.logWriter.flush();
    const total = await store.interactions.count(project.id);
    printWelcome(url, secret.key, pub.key, calls.length, ratings, total);
  } catch (err) {
    await shutdown();
    throw err;
  }
  if (opts.exit) {
    await shutdown();
    return;
  }
  await new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve());
  });
  await shutdown();
}

function printWelcome(
  url: string,
  secret: string,
  pub: string,
  calls: number,
  ratings: number,
  total: number,
): void {
  const lines = [
    '',
    `Ratchet is running at ${url}`,
    `  ${calls} simulated support chats went through the gateway and got ${ratings} ratings (${total} interactions in the demo project).`,
    '',
    'Look around:',
    `  curl -s -H "authorization: Bearer ${secret}" "${url}/api/v1/interactions?limit=3"`,
    `  curl -s ${url}/openapi.json     (the API)`,
    `  curl -s ${url}/metrics          (Prometheus)`,
    '',
    'Point an app at it with the official openai client:',
    `  new OpenAI({ baseURL: "${url}/v1", apiKey: "${secret}" })`,
    '  model: "support-bot"  (a route; the answer carries x-ratchet-interaction-id and',
    '  x-ratchet-feedback-token: hand both to the page, whose public key rates only with the token)',
    '',
    `Secret key (server side): ${secret}`,
    `Public key (browser, feedback with a token only): ${pub}`,
    '',
    'Ctrl-C to stop.',
  ];
  console.log(lines.join('\n'));
}

/** `ratchet sample`: a generated sample of rated chats through a stand-in model. */
export function registerSampleCommand(program: Command): void {
  program
    .command('sample')
    .description(
      'Load a generated sample of rated support chats through a stand-in model (no training): the API, CLI and dashboard in seconds',
    )
    .option('--port <port>', 'port for the server', nonNegativeInteger, 4400)
    .option('--calls <n>', 'simulated chats', nonNegativeInteger, 300)
    .option('--exit', 'load the sample and exit instead of serving')
    .action(async (opts: { port: number; calls: number; exit?: boolean }) => {
      await runDemo({
        databaseUrl: program.opts().databaseUrl,
        port: opts.port,
        calls: opts.calls,
        exit: opts.exit ?? false,
      });
    });
}
