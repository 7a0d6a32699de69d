// One calibration step of bench/scale in a process of its own, so its peak memory is its own:
//   node --conditions=source --import tsx bench/procs/calibrate-build.ts <step> <database url> <project id> <data dir>
// step: calibrate (as the loop's calibrate stage does, keeping its snapshot in the data folder),
// build (one read of the calibrated interactions and a KTO and a DPO build, as its build stage
// does), recalibrate (calibrate again through the same call: it continues from the snapshot the
// calibrate step left), refit (a full refit: recalibration off) or full (a full refit that keeps
// its snapshot, as the loop's scheduled refits do; bench/tools/recalibrate-probe.ts starts from
// one). Prints one JSON line: seconds per part, the calibration's summary and the process's peak
// resident memory (ru_maxrss).
import { join } from 'node:path';
import { buildDatasetVersion, calibrateProject, loadDatasetInputs } from '@ratchet/loop';
import { Store } from '@ratchet/store';

const [step, url, projectId, dataDir] = process.argv.slice(2);
const steps = ['calibrate', 'build', 'recalibrate', 'refit', 'full'];
if (!steps.includes(step ?? '') || !url || !projectId || !dataDir) {
  console.error(`usage: calibrate-build.ts ${steps.join('|')} <database url> <project id> <data dir>`);
  process.exit(2);
}

const seconds = (since: number) => (performance.now() - since) / 1000;

async function main(): Promise<Record<string, unknown>> {
  const store = await Store.open(url!);
  try {
    if (step === 'build') return await build(store);
    const started = performance.now();
    const calibration = await calibrateProject(
      store,
      projectId!,
      step === 'refit'
        ? { recalibration: false }
        : step === 'full'
          ? { recalibration: false, dataDir: dataDir! }
          : { dataDir: dataDir! },
    );
    const summary = {
      mode: calibration.mode,
      fromSnapshot: calibration.fromSnapshot,
      reason: calibration.reason,
      ratings: calibration.ratings,
      items: calibration.items,
      raters: calibration.raters,
      flagged: calibration.flagged,
      rewardsWritten: calibration.rewardsWritten,
      seconds: calibration.seconds,
    };
    return { calibrateSeconds: seconds(started), calibration: summary };
  } finally {
    await store.close();
  }
}

async function build(store: Store): Promise<Record<string, unknown>> {
  const started = performance.now();
  // Curation off: dedup and the text filters over synthetic text are not what is measured here
  // (bench/calibrate-build.ts does the same).
  const inputs = await loadDatasetInputs(store, projectId!);
  const read = performance.now();
  console.error(`inputs read: ${inputs.candidates.length} candidates in ${seconds(started)} s`);
  const datasets = join(dataDir!, 'datasets');
  const kto = await buildDatasetVersion(
    store,
    projectId!,
    { name: 'scale-kto', method: 'kto', curation: false },
    { dataDir: datasets, inputs },
  );
  const built = performance.now();
  const dpo = await buildDatasetVersion(
    store,
    projectId!,
    { name: 'scale-dpo', method: 'dpo', curation: false },
    { dataDir: datasets, inputs },
  );
  console.error(`kto: ${kto.rowCount} rows; dpo: ${dpo.rowCount} rows`);
  return {
    readInputsSeconds: (read - started) / 1000,
    ktoSeconds: (built - read) / 1000,
    dpoSeconds: seconds(built),
    totalSeconds: seconds(started),
    ktoRows: kto.rowCount,
    dpoRows: dpo.rowCount,
  };
}

main().then(
  (result) => {
    // ru_maxrss, in KiB on Linux: the most this process was ever resident, its heap and buffers.
    console.log(JSON.stringify({ ...result, maxRssMib: process.resourceUsage().maxRSS / 1024 }));
    process.exit(0);
  },
  (err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  },
);
