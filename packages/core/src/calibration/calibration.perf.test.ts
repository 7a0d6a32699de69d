import { describe, expect, it } from 'vitest';
import { calibrateRatingColumns } from './calibrate.js';
import { pearson, rmse, signAgreement, syntheticRatings } from './test-utils/synthetic.js';

/**
 * The scale of the benchmark (1M interactions, 3M feedback events). Too slow for every test run,
 * so it runs only with RATCHET_PERF=1:
 *   RATCHET_PERF=1 npx vitest run packages/core/src/calibration/calibration.perf.test.ts
 */
describe.runIf(process.env['RATCHET_PERF'] === '1')('calibration at 3M ratings', () => {
  for (const adversarialShare of [0, 0.2]) {
    it(`calibrates 1M items x 3 ratings from 20k raters (${adversarialShare * 100}% adversarial)`, () => {
      const s = syntheticRatings({
        seed: 11,
        items: 1_000_000,
        raters: 20_000,
        ratingsPerItem: 3,
        adversarialShare,
        output: 'stars',
      });
      const cpuBefore = process.cpuUsage();
      const started = performance.now();
      const result = calibrateRatingColumns(s.columns);
      const seconds = (performance.now() - started) / 1000;
      const cpu = process.cpuUsage(cpuBefore);
      // CPU time is what one core spends; wall time also counts waiting for a busy machine.
      const cpuSeconds = (cpu.user + cpu.system) / 1e6;
      let caught = 0;
      let falseFlags = 0;
      for (let r = 0; r < s.adversarial.length; r++) {
        if (s.adversarial[r]) caught += result.raters.flagged[r]!;
        else falseFlags += result.raters.flagged[r]!;
      }
      console.log(
        `3M ratings, ${adversarialShare * 100}% adversarial: ${seconds.toFixed(2)} s wall, ${cpuSeconds.toFixed(2)} s CPU, ` +
          `${result.iterations} iterations ` +
          `in ${result.rounds} fits; bias r = ${pearson(result.raters.bias, s.bias, (r) => !s.adversarial[r]).toFixed(4)}; ` +
          `RMSE ${rmse(result.items.reward, s.quality).toFixed(4)} vs raw ${rmse(result.items.rawMean, s.quality).toFixed(4)}; ` +
          `labels ${signAgreement(result.items.reward, s.quality).toFixed(4)} vs raw ${signAgreement(result.items.rawMean, s.quality).toFixed(4)}; ` +
          `flagged ${caught} adversaries, ${falseFlags} others`,
      );
      expect(cpuSeconds).toBeLessThan(10);
    }, 120_000);
  }
});
