// How long one rollups roll-forward (what `ratchet serve` runs every 10 s) holds the event loop,
// with N gateway-like calls in the current hour, on a fresh SQLite file:
//   node --conditions=source --import tsx bench/tools/rollup-stall.ts [N,N,...]
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InteractionInput, parseInput } from '@ratchet/core';
import { Store } from '@ratchet/store';

const sizes = (process.argv[2] ?? '10000,30000,70000').split(',').map(Number);
const dir = mkdtempSync(join(tmpdir(), 'rollstall-'));
const store = await Store.open(`sqlite:${join(dir, 'r.db')}`);
const projectId = (await store.projects.create('p')).id;
let n = 0;
const now = Date.now();
for (const size of sizes) {
  while (n < size) {
    const batch = Array.from({ length: 1000 }, (_, i) =>
      parseInput(InteractionInput, {
        id: `i-${n + i}`,
        route: 'r',
        model: 'bench-model',
        createdAt: now - 1000 + ((n + i) % 1000),
        status: 'ok',
        latencyMs: 1 + ((n + i) % 50),
        usage: { inputTokens: 40, outputTokens: 30 },
        messages: [
          {
            role: 'system',
            content: 'You are the support assistant of an online shop. Answer briefly and politely.',
          },
          { role: 'user', content: 'Where is my parcel? I ordered a pair of running shoes last Tuesday.' },
        ],
        output: 'Thanks for reaching out! Could you give me your order number?',
      }),
    );
    await store.interactions.insert(projectId, batch);
    n += 1000;
  }
  await store.rollups.rollForward(projectId);
  // One more write, then the timed pass.
  await store.interactions.insert(projectId, [
    parseInput(InteractionInput, {
      id: `x-${n}`,
      model: 'bench-model',
      createdAt: now,
      messages: [{ role: 'user', content: 'x' }],
      output: 'x',
    }),
  ]);
  n++;
  let maxGap = 0;
  let last = performance.now();
  const ticker = setInterval(() => {
    const t = performance.now();
    maxGap = Math.max(maxGap, t - last);
    last = t;
  }, 1);
  await new Promise((r) => setTimeout(r, 20));
  maxGap = 0;
  last = performance.now();
  const t0 = performance.now();
  await store.rollups.rollForward(projectId);
  const wall = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 5));
  clearInterval(ticker);
  console.log(
    `${size} rows in the hour: roll-forward ${wall.toFixed(1)} ms wall, longest event-loop block ${maxGap.toFixed(1)} ms`,
  );
}
await store.close();
