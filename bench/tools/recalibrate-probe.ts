// The scale bench's last steps again on a database it kept (BENCH_SCALE_KEEP=1 prints its URL):
// a full calibration that keeps its snapshot (as the bench's first), 1% new ratings (addition `round`, 1 or 2: the bench made
// round 0), the recalibration continuing from the snapshot, a full refit, and the comparison of the
// two, each calibration in a child process as the bench runs it. For measuring the recalibration
// without loading 10M calls again:
//   node --conditions=source --import tsx bench/tools/recalibrate-probe.ts <url> <n> <round>
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { addNewRatings, calibrationStep, compareCalibration, keepCalibration } from '../scale.js';

const [url, nText, roundText] = process.argv.slice(2);
const n = Number(nText);
const round = Number(roundText);
if (!url || !Number.isInteger(n) || n <= 0 || !Number.isInteger(round)) {
  console.error('usage: recalibrate-probe.ts <database url> <n: interactions loaded> <round: 1 or 2>');
  process.exit(2);
}
const log = (m: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${m}`);
const client = new pg.Client({ connectionString: url });
await client.connect();
const dataDir = mkdtempSync(join(tmpdir(), 'ratchet-recalibrate-probe-'));
const unlimited = { seconds: 3600, mib: 32_768 };
try {
  const { rows } = await client.query<{ id: string }>('select id from projects order by created_at limit 1');
  const projectId = rows[0]!.id;
  const kept = await calibrationStep('full', url, projectId, dataDir, unlimited);
  log(`full calibration keeping a snapshot: ${JSON.stringify(kept)}`);
  const added = await addNewRatings(url, projectId, n, round);
  await client.query('analyze feedback, feedback_current');
  log(`added ${added} ratings`);
  const incremental = await calibrationStep('recalibrate', url, projectId, dataDir, unlimited);
  log(`recalibration: ${JSON.stringify(incremental)}`);
  await keepCalibration(client, projectId, 'probe_incremental');
  const refit = await calibrationStep('refit', url, projectId, dataDir, unlimited);
  log(`full refit: ${JSON.stringify(refit)}`);
  const compared = await compareCalibration(client, projectId, 'probe_incremental');
  log(`incremental vs full refit: ${JSON.stringify(compared)}`);
  if ('calibrateSeconds' in incremental && 'calibrateSeconds' in refit)
    log(`speedup ${(refit.calibrateSeconds! / incremental.calibrateSeconds!).toFixed(2)}x`);
} finally {
  await client.end();
  rmSync(dataDir, { recursive: true, force: true });
}
