// The scale bench's KTO and DPO build at a size the bench takes an hour to load, without the
// database read: N synthetic rated answers shaped like bench/scale's (50,000 prompts, 1-4 ratings
// each, a fifth of the calls unrated, short texts) pushed into the build's columns, then
// buildDatasetVersion for KTO and DPO (curation off) on an in-memory SQLite store. Prints the
// heap and resident memory after each stage: whether a size fits in a heap limit, e.g.
//   node --max-old-space-size=6144 --conditions=source --import tsx bench/tools/build-probe.ts 8000000
// (add --expose-gc for the live heap after each stage as well).
// The rewards are random, so the KTO share (about 60%) and the DPO pairs differ from the bench's.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CandidateColumns } from '@ratchet/core';
import { buildDatasetVersion, type DatasetInputs } from '@ratchet/loop';
import { Store } from '@ratchet/store';

const n = Number(process.argv[2] ?? 8_000_000);
const mib = (b: number) => Math.round(b / 2 ** 20);
const t0 = performance.now();
// With --expose-gc each line also gives the live heap (after a full collection).
const collect = (globalThis as { gc?: () => void }).gc;
const log = (m: string) => {
  const heap = mib(process.memoryUsage().heapUsed);
  collect?.();
  const live = collect ? ` live ${mib(process.memoryUsage().heapUsed)}` : '';
  console.log(
    `${((performance.now() - t0) / 1000).toFixed(1)} s ${m}: rss ${mib(process.memoryUsage().rss)} heap ${heap}${live} maxrss ${mib(process.resourceUsage().maxRSS * 1024)}`,
  );
};
/** A rating id shaped like the server's (a UUIDv7: its time first), as bench/scale's are. */
const ratingId = (i: number, k: number) => {
  const hex = (x: number, digits: number) => x.toString(16).padStart(digits, '0');
  const time = hex(1.7e12 + i * 31_536, 12);
  return `${time.slice(0, 8)}-${time.slice(8)}-7000-8000-${hex(i * 8 + k, 12)}`;
};
const store = await Store.open('sqlite::memory:');
const projectId = (await store.projects.create('probe')).id;
const table = new CandidateColumns();
const prompts = new Map<string, string>();
// One empty tag list for every untagged answer, as the store's read gives them.
const noTags: string[] = [];
let seed = 17;
const rand = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
};
for (let j = 0; j < n; j++) {
  const i = Math.floor(j * 1.25); // a fifth unrated
  const p = i % 50_000;
  const hash = p.toString(16).padStart(32, '0');
  let text = prompts.get(hash);
  if (!text) {
    text = JSON.stringify([{ role: 'user', content: `Customer question ${p}: where is my order?` }]);
    prompts.set(hash, text);
  }
  const reward = rand() * 2 - 1;
  const count = 1 + (i % 4);
  table.push({
    interactionId: `i${String(i).padStart(9, '0')}`,
    promptHash: hash,
    prompt: text,
    completion: JSON.stringify({ role: 'assistant', content: `Answer ${i}` }),
    model: 'gpt-4o-mini',
    reward,
    lower: reward - 0.8 * rand(),
    upper: reward + 0.8 * rand(),
    n: count,
    weight: 1,
    createdAt: 1.7e12 + i * 31_536,
    tags: noTags,
    feedbackIds: Array.from({ length: count }, (_, k) => ratingId(i, k)),
  });
}
log(`${n} candidates`);
const calibration = await store.calibration.save(projectId, {}, {}, [], []);
const inputs: DatasetInputs = {
  calibrationId: calibration.id,
  candidates: table,
  comparisons: [],
  flaggedRaters: new Map(),
};
const dir = mkdtempSync(join(tmpdir(), 'probe-'));
try {
  for (const method of ['kto', 'dpo'] as const) {
    const v = await buildDatasetVersion(
      store,
      projectId,
      { name: `p-${method}`, method, curation: false },
      {
        dataDir: dir,
        inputs,
        onProgress: (stage, d) => log(`${method} ${stage} ${JSON.stringify(d)}`),
      },
    );
    log(`${method} recorded ${v.rowCount} rows`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`heap limit ${mib((await import('node:v8')).getHeapStatistics().heap_size_limit)} MiB`);
await store.close();
