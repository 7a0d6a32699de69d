import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { mulberry32, newId, promptHash } from '@ratchet/core';
import { buildDatasetVersion, calibrateProject, loadDatasetInputs } from '@ratchet/loop';
import { Store } from '@ratchet/store';
import Database from 'better-sqlite3';
import { type Bench, loadNote } from './lib/bench.js';
import { round, workDir } from './lib/results.js';

interface World {
  truth: Float64Array;
  raterBias: Float64Array;
  adversarial: Uint8Array;
}

/**
 * Writes the synthetic project straight through better-sqlite3 (setup is not what is measured):
 * `interactions` answers to `interactions / 10` prompts, each with a hidden quality in [-1, 1];
 * raters with a leniency bias, 20% of them adversarial (they rate the opposite of the truth);
 * three ratings per interaction, thumbs or 1-5 stars.
 */
export async function seed(
  dbPath: string,
  projectId: string,
  n: number,
  raters: number,
  log: (m: string) => void,
): Promise<World> {
  const rand = mulberry32(2026);
  const truth = new Float64Array(n);
  const raterBias = Float64Array.from({ length: raters }, () => rand() * 1.2 - 0.6);
  const adversarial = Uint8Array.from({ length: raters }, (_, r) => (r < raters * 0.2 ? 1 : 0));
  const db = new Database(dbPath);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = OFF');
  const now = Date.now();
  const insertInteraction = db.prepare(
    `insert into interactions (project_id, id, route, model, variant, messages, output, parameters, latency_ms, input_tokens, output_tokens, total_tokens, session_id, user_id, metadata, tags, status, error, trace_id, span_id, source, prompt_hash, created_at, received_at)
     values (?, ?, 'support-bot', 'tiny', null, ?, ?, '{}', null, null, null, null, null, null, '{}', '[]', 'ok', null, null, null, 'api', ?, ?, ?)`,
  );
  const insertFeedback = db.prepare(
    `insert into feedback (id, project_id, interaction_id, rater_id, source, kind, value, label, text, data, idempotency_key, metadata, created_at, received_at)
     values (?, ?, ?, ?, 'user', ?, ?, ?, null, null, null, '{}', ?, ?)`,
  );
  const insertCurrent = db.prepare(
    `insert into feedback_current (project_id, interaction_id, rater_id, kind, feedback_id, created_at, value, label) values (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const ids: string[] = [];
  const batch = db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const p = Math.floor(i / 10);
      const messages = [
        { role: 'user', content: `Customer question ${p}: how do I fix problem ${p % 977} with order ${p}?` },
      ];
      const q = rand() * 2 - 1;
      truth[i] = q;
      const id = `i${String(i).padStart(7, '0')}`;
      ids[i] = id;
      insertInteraction.run(
        projectId,
        id,
        JSON.stringify(messages),
        JSON.stringify({
          role: 'assistant',
          content: `Answer ${i} to question ${p}: ${q > 0 ? 'here is how' : 'no idea'} (${Math.floor(rand() * 1e9)})`,
        }),
        promptHash(messages as never),
        now + i,
        now + i,
      );
      const chosen = new Set<number>();
      while (chosen.size < 3) chosen.add(Math.floor(rand() * raters));
      for (const r of chosen) {
        const signal = adversarial[r] ? -q : q;
        const x = signal + raterBias[r]! * 0.5 + (rand() - 0.5) * 0.5;
        const thumbs = rand() < 0.5;
        const fid = newId(now + i);
        const kind = thumbs ? 'thumbs' : 'stars';
        const value = thumbs ? (x > 0 ? 1 : -1) : Math.min(5, Math.max(1, Math.round(3 + 2 * x)));
        insertFeedback.run(
          fid,
          projectId,
          id,
          `r${r}`,
          kind,
          value,
          thumbs ? (value > 0 ? 'up' : 'down') : 'stars',
          now + i,
          now + i,
        );
        insertCurrent.run(
          projectId,
          id,
          `r${r}`,
          kind,
          fid,
          now + i,
          value,
          thumbs ? (value > 0 ? 'up' : 'down') : 'stars',
        );
      }
    }
  });
  const step = 50_000;
  for (let from = 0; from < n; from += step) {
    batch(from, Math.min(n, from + step));
    if (from % 200_000 === 0) log(`seeded ${from + step} interactions`);
  }
  const insertRater = db.prepare(
    `insert into raters (project_id, id, source, feedback_count, first_seen_at, last_seen_at, flagged) values (?, ?, 'user', 0, ?, ?, 0)`,
  );
  db.transaction(() => {
    for (let r = 0; r < raters; r++) insertRater.run(projectId, `r${r}`, now, now);
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return { truth, raterBias, adversarial };
}

function pearson(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
    syy += (ys[i]! - my) ** 2;
  }
  return sxy / Math.sqrt(sxx * syy);
}

export const calibrateBuild: Bench = {
  name: 'calibrate-build',
  summary: '1M interactions with 3M ratings on SQLite: calibrate, then build a KTO and a DPO dataset',
  keyMetrics: [
    'calibrate_build_1m_s',
    'calibrate_build_cpu_s',
    'bias_recovery_corr',
    'adversary_recall',
    'adversary_false_flag_rate',
    'calibrated_label_accuracy',
    'raw_label_accuracy',
  ],
  async run(ctx) {
    const n = ctx.tiny ? 5_000 : 1_000_000;
    const raters = ctx.tiny ? 200 : 10_000;
    const dir = join(workDir, 'calibrate-build');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const url = `sqlite:${join(dir, 'ratchet.db')}`;
    const setup = await Store.open(url);
    const projectId = (await setup.projects.create('bench')).id;
    await setup.close();
    ctx.log(`seeding ${n} interactions, ${3 * n} ratings`);
    const world = await seed(join(dir, 'ratchet.db'), projectId, n, raters, ctx.log);

    const store = await Store.open(url);
    try {
      const startLoad = loadNote();
      const cpuStart = process.cpuUsage();
      const started = performance.now();
      const calibration = await calibrateProject(store, projectId);
      const tCal = performance.now();
      ctx.log(
        `calibrated in ${round((tCal - started) / 1000, 1)} s (read ${round(calibration.seconds.read, 1)}, fit ${round(calibration.seconds.fit, 1)}, save ${round(calibration.seconds.save, 1)})`,
      );
      // Curation off: the text in this synthetic set is generated, and near-duplicate search over
      // 1M texts is measured on its own; the budget here is calibration and building.
      // Both builds use one read of the calibrated interactions, as the loop does each round.
      const inputs = await loadDatasetInputs(store, projectId);
      const tRead = performance.now();
      const dataDir = join(dir, 'data');
      const kto = await buildDatasetVersion(
        store,
        projectId,
        { name: 'bench-kto', method: 'kto', curation: false },
        { dataDir, inputs },
      );
      const tKto = performance.now();
      const dpo = await buildDatasetVersion(
        store,
        projectId,
        { name: 'bench-dpo', method: 'dpo', curation: false },
        { dataDir, inputs },
      );
      const done = performance.now();
      const cpu = process.cpuUsage(cpuStart);
      ctx.log(
        `inputs read in ${round((tRead - tCal) / 1000, 1)} s; kto ${kto.rowCount} rows in ${round((tKto - tRead) / 1000, 1)} s; dpo ${dpo.rowCount} rows in ${round((done - tKto) / 1000, 1)} s`,
      );

      const raterRows = await store.raters.list(projectId, { limit: raters + 10 });
      const byId = new Map(raterRows.map((r) => [r.id, r]));
      const honest = [...Array(raters).keys()].filter(
        (r) => !world.adversarial[r] && byId.get(`r${r}`)?.bias !== null,
      );
      const recovered = honest.map((r) => byId.get(`r${r}`)!.bias!);
      const adversaries = [...Array(raters).keys()].filter((r) => world.adversarial[r]);
      const recall = adversaries.filter((r) => byId.get(`r${r}`)?.flagged).length / adversaries.length;
      const falseFlags = honest.filter((r) => byId.get(`r${r}`)?.flagged).length / honest.length;

      let calibratedRight = 0;
      let rawRight = 0;
      let counted = 0;
      for await (const page of store.datasets.ratedInteractions(projectId)) {
        for (const item of page) {
          const q = world.truth[Number(item.interactionId.slice(1))]!;
          counted++;
          if (Math.sign(item.reward) === Math.sign(q)) calibratedRight++;
        }
      }
      // The raw mean of each item's rewards, from the same store, for the comparison.
      const raw = await store.db
        .selectFrom('current_rewards')
        .select(['interaction_id', 'raw_mean'])
        .where('project_id', '=', projectId)
        .execute();
      for (const r of raw)
        if (Math.sign(r.raw_mean) === Math.sign(world.truth[Number(r.interaction_id.slice(1))]!)) rawRight++;

      return {
        metrics: {
          calibrate_build_1m_s: round((done - started) / 1000, 2),
          // Contention moves wall time by 2x or more on the shared machine; CPU time much less.
          calibrate_build_cpu_s: round((cpu.user + cpu.system) / 1e6, 2),
          calibrate_s: round((tCal - started) / 1000, 2),
          read_inputs_s: round((tRead - tCal) / 1000, 2),
          build_kto_s: round((tKto - tRead) / 1000, 2),
          build_dpo_s: round((done - tKto) / 1000, 2),
          interactions_count: n,
          ratings_count: calibration.ratings,
          kto_rows_count: kto.rowCount,
          dpo_rows_count: dpo.rowCount,
          bias_recovery_corr: round(
            pearson(
              recovered,
              honest.map((r) => world.raterBias[r]! * 0.5),
            ),
            4,
          ),
          adversary_recall: round(recall, 4),
          adversary_false_flag_rate: round(falseFlags, 4),
          calibrated_label_accuracy: round(calibratedRight / counted, 4),
          raw_label_accuracy: round(rawRight / raw.length, 4),
        },
        notes: `${n} interactions (10 answers per prompt), ${3 * n} current ratings (half thumbs, half 1-5 stars) by ${raters} raters, 20% adversarial; SQLite, one run; curation off in the builds; calibrate_build_cpu_s is the bench process's user+system CPU over the same span (contention on the shared machine moves it far less than wall time); ${startLoad} at the start of the measured part, ${loadNote()} at its end.`,
      };
    } finally {
      await store.close();
    }
  },
};
