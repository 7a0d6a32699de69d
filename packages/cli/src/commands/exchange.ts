import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import {
  checkAgainstScales,
  ExchangeLine,
  feedbackToInput,
  fromZodError,
  InteractionFilters,
  interactionToInput,
  type ParsedFeedback,
  type ParsedInteraction,
  parseInput,
  referencedInteractionIds,
} from '@ratchet/core';
import type { Store } from '@ratchet/store';
import type { Command } from 'commander';
import { projectIdByName, withStore } from '../context.js';
import { progressBar } from '../progress.js';

const BATCH = 1000;

export interface ImportSummary {
  lines: number;
  interactionsCreated: number;
  feedbackCreated: number;
}

/** Reads and validates every line before anything is written, so a bad file writes nothing. */
async function readExchangeFile(
  path: string,
): Promise<{ interactions: ParsedInteraction[]; feedback: ParsedFeedback[]; origin: string[] }> {
  const interactions: ParsedInteraction[] = [];
  const feedback: ParsedFeedback[] = [];
  /** Where each feedback item came from (`file:line: feedback.k`), for error messages. */
  const origin: string[] = [];
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Number.POSITIVE_INFINITY });
  let n = 0;
  for await (const text of lines) {
    n++;
    if (!text.trim()) continue;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new Error(`${path}:${n}: not valid JSON (${(err as Error).message})`);
    }
    const parsed = ExchangeLine.safeParse(json);
    if (!parsed.success) throw new Error(`${path}:${n}: ${fromZodError(parsed.error).message}`);
    interactions.push({
      ...parsed.data.interaction,
      source: parsed.data.interaction.source === 'api' ? 'import' : parsed.data.interaction.source,
    });
    parsed.data.feedback.forEach((f, k) => {
      feedback.push(f);
      origin.push(`${path}:${n}: feedback.${k}`);
    });
  }
  return { interactions, feedback, origin };
}

/**
 * Imports a JSONL exchange file. Validation covers the whole file first; writes are idempotent
 * (interaction ids, and feedback idempotency keys derived from the file when absent), so an
 * import cut short is completed by running it again.
 */
export async function importExchange(store: Store, projectId: string, path: string): Promise<ImportSummary> {
  const { interactions, feedback, origin } = await readExchangeFile(path);
  const known = new Set(interactions.map((i) => i.id));
  const referenced = feedback.flatMap(referencedInteractionIds).filter((id) => !known.has(id));
  const found = await store.interactions.existing(projectId, referenced);
  feedback.forEach((f, i) => {
    const absent = referencedInteractionIds(f).find((id) => !known.has(id) && !found.has(id));
    if (absent)
      throw new Error(`${origin[i]}: interaction "${absent}" is neither in the file nor in the project`);
  });
  const scales = await store.scoreConfigs.byName(projectId);
  feedback.forEach((f, i) => {
    checkAgainstScales(f, scales, origin[i]);
  });

  const bar = progressBar('import', interactions.length + feedback.length);
  let interactionsCreated = 0;
  let feedbackCreated = 0;
  try {
    for (let i = 0; i < interactions.length; i += BATCH) {
      const part = interactions.slice(i, i + BATCH);
      interactionsCreated += (await store.interactions.insert(projectId, part)).filter(
        (r) => r.created,
      ).length;
      bar.increment(part.length);
    }
    for (let i = 0; i < feedback.length; i += BATCH) {
      const part = feedback
        .slice(i, i + BATCH)
        .map((f, k) => ({ ...f, idempotencyKey: f.idempotencyKey ?? `import:${f.interactionId}:${i + k}` }));
      feedbackCreated += (await store.feedback.insert(projectId, part, (k) => `feedback ${i + k}`)).filter(
        (r) => r.created,
      ).length;
      bar.increment(part.length);
    }
  } finally {
    bar.stop();
  }
  return { lines: interactions.length, interactionsCreated, feedbackCreated };
}

/** Writes interactions (newest first) with their whole feedback history as JSONL. */
export async function exportExchange(
  store: Store,
  projectId: string,
  path: string | undefined,
  filters: InteractionFilters = {},
): Promise<number> {
  const out = path ? createWriteStream(path) : process.stdout;
  const total = await store.interactions.count(projectId);
  const bar = path ? progressBar('export', total) : undefined;
  let written = 0;
  let cursor: string | undefined;
  try {
    do {
      const page = await store.interactions.list(projectId, filters, { limit: BATCH, cursor });
      const feedback = await store.feedback.listForInteractions(
        projectId,
        page.items.map((i) => i.id),
      );
      for (const interaction of page.items) {
        const line = {
          ...interactionToInput(interaction),
          feedback: (feedback.get(interaction.id) ?? []).map(feedbackToInput),
        };
        if (!out.write(`${JSON.stringify(line)}\n`)) await once(out, 'drain');
      }
      written += page.items.length;
      bar?.increment(page.items.length);
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
  } finally {
    bar?.stop();
  }
  if (path)
    await new Promise<void>((resolve, reject) =>
      (out as ReturnType<typeof createWriteStream>).end((err?: Error) => (err ? reject(err) : resolve())),
    );
  return written;
}

/** `ratchet export`: interactions with their feedback history as JSONL. */
export function registerExportCommand(program: Command): void {
  program
    .command('export')
    .description('Export interactions with their whole feedback history as JSONL')
    .requiredOption('--project <name>', 'project name')
    .option('--out <file>', 'write here instead of stdout')
    .option('--route <route>')
    .option('--model <model>')
    .option('--tag <tag>')
    .option('--from <time>', 'ISO time or epoch ms')
    .option('--to <time>', 'ISO time or epoch ms')
    .action(
      async (opts: {
        project: string;
        out?: string;
        route?: string;
        model?: string;
        tag?: string;
        from?: string;
        to?: string;
      }) => {
        const time = (v?: string) => (v === undefined ? undefined : /^\d+$/.test(v) ? Number(v) : v);
        const filters = parseInput(InteractionFilters, {
          route: opts.route,
          model: opts.model,
          tag: opts.tag,
          from: time(opts.from),
          to: time(opts.to),
        });
        await withStore(program.opts(), async (store) => {
          const n = await exportExchange(
            store,
            await projectIdByName(store, opts.project),
            opts.out,
            filters,
          );
          if (opts.out) console.error(`exported ${n} interactions to ${opts.out}`);
        });
      },
    );
}
