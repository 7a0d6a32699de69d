import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { testDatabases } from '@ratchet/store/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FuzzTarget, type Seeded, startFuzzTarget } from './harness.js';

// Schemathesis (pinned in requirements-dev.txt) lives in the repository venv that `make test`
// installs; without it this gate would silently test nothing, so a missing venv is a failure.
const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));
const schemathesis = join(repoRoot, '.venv/bin/st');

/**
 * What every answer is checked for: no 5xx, a status the document lists, a content type it
 * lists, a body that matches the documented schema (the one error shape on every 4xx), and a
 * 4xx for every request the document says is invalid (nothing it rules out is accepted).
 */
const checks = [
  'not_a_server_error',
  'status_code_conformance',
  'content_type_conformance',
  'response_schema_conformance',
  'negative_data_rejection',
];

/**
 * Test cases per operation in the fuzzing phase. The coverage phase adds its own (boundary
 * values, each field missing, wrong types: ~150 per operation), independent of this number.
 */
const examplesPerOperation = 20;

type Key = 'secret' | 'public';

interface FuzzRun {
  exitCode: number;
  output: string;
  /** Test cases schemathesis generated (its summary line), for the report. */
  generated: number;
  /** Operations it ran (test cases of its JUnit report). */
  operations: number;
}

const tomlList = (values: string[]) => `[${values.map((v) => JSON.stringify(v)).join(', ')}]`;

/**
 * Schemathesis's config. Half of the time a path parameter, an `interactionId` or a feedback
 * token is one that exists, so the fuzzer reaches past the 404s. With the public key, the
 * operations only a secret key may call get a few cases each (every one must be a 401/403 in the
 * error shape) instead of the full coverage phase, which would only repeat that answer.
 */
function configFile(seeded: Seeded, key: Key, secretOnly: string[]): string {
  const bind = (dictionary: string) => `{ dictionary = "${dictionary}", probability = 0.5 }`;
  const lines = [
    `generation.max-examples = ${examplesPerOperation}`,
    '[dictionaries]',
    `interactions = { values = ${tomlList(seeded.interactions)} }`,
    `datasets = { values = ${tomlList(seeded.datasets)} }`,
    `models = { values = ${tomlList(seeded.models)} }`,
    `experiments = { values = ${tomlList(seeded.experiments)} }`,
    `routes = { values = ${tomlList(seeded.routes)} }`,
    `tokens = { values = ${tomlList(seeded.feedbackTokens)} }`,
    '[parameters]',
    `"path.id" = ${bind('interactions')}`,
    `"path.route" = ${bind('routes')}`,
    `"body.interactionId" = ${bind('interactions')}`,
    `"body.feedbackToken" = ${bind('tokens')}`,
  ];
  // `{ref}` names a different kind of thing under each path.
  for (const [pattern, dictionary] of [
    ['^/api/v1/(dashboard/)?datasets/', 'datasets'],
    ['^/api/v1/models/', 'models'],
    ['^/api/v1/experiments/', 'experiments'],
  ])
    lines.push(
      '[[operations]]',
      `include-path-regex = "${pattern}"`,
      `parameters = { "path.ref" = ${bind(dictionary!)} }`,
    );
  if (key === 'public')
    lines.push(
      '[[operations]]',
      `include-name = ${tomlList(secretOnly)}`,
      'phases.coverage.enabled = false',
      'generation.max-examples = 2',
    );
  return `${lines.join('\n')}\n`;
}

/** `METHOD /path` of every operation the document says a public key may not call. */
async function secretOnlyOperations(url: string): Promise<string[]> {
  const document = (await (await fetch(`${url}/openapi.json`)).json()) as {
    paths: Record<string, Record<string, { 'x-ratchet-access': 'none' | string[] }>>;
  };
  return Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods)
      .filter(([, { 'x-ratchet-access': access }]) => access !== 'none' && !access.includes('public'))
      .map(([method]) => `${method.toUpperCase()} ${path}`),
  );
}

async function runSchemathesis(target: FuzzTarget, key: Key): Promise<FuzzRun> {
  const { url, secretKey, publicKey } = target.server;
  const config = join(target.dir, `schemathesis-${key}.toml`);
  writeFileSync(config, configFile(target.seeded, key, await secretOnlyOperations(url)));
  const junit = join(target.dir, `junit-${key}.xml`);
  const args = [
    '--config-file',
    config,
    'run',
    `${url}/openapi.json`,
    '--header',
    `Authorization: Bearer ${key === 'secret' ? secretKey : publicKey}`,
    '--checks',
    checks.join(','),
    // Deterministic: the same inputs in the same order on every run, so a failure reproduces and
    // a green run stays green. No example database is kept (nothing written outside target.dir).
    '--generation-deterministic',
    '--phases',
    'coverage,fuzzing',
    '--workers',
    '1',
    // Generous: a slow answer on a busy machine is not a failure; a hung request still ends.
    '--request-timeout',
    '60',
    '--no-color',
    // The keys are throwaway; a failure's curl line must reproduce it as sent.
    '--output-sanitize',
    'false',
    '--report',
    'junit',
    '--report-junit-path',
    junit,
  ];
  return new Promise((resolve) => {
    execFile(schemathesis, args, { cwd: target.dir, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const output = `${stdout}${stderr}`;
      const report = existsSync(junit) ? readFileSync(junit, 'utf8') : '';
      resolve({
        exitCode: err ? (typeof err.code === 'number' ? err.code : -1) : 0,
        output,
        generated: Number(output.match(/(\d+) generated/)?.[1] ?? 0),
        operations: (report.match(/<testcase /g) ?? []).length,
      });
    });
  });
}

/** The failure sections of schemathesis's report (its whole output when it did not get that far). */
function failures(run: FuzzRun): string {
  const start = run.output.indexOf('FAILURES');
  return start >= 0 ? run.output.slice(start) : run.output;
}

for (const database of testDatabases()) {
  describe(`schemathesis over /openapi.json on ${database.name}`, () => {
    let target: FuzzTarget;

    beforeAll(async () => {
      if (!existsSync(schemathesis))
        throw new Error(`the fuzz run needs schemathesis at ${schemathesis} (make install puts it there)`);
      target = await startFuzzTarget(await database.create());
    });
    afterAll(async () => {
      await target?.close();
      await database.cleanup();
    });

    for (const key of ['secret', 'public'] as const) {
      it(`with the ${key} key: no server error; every status, content type and body as documented`, async () => {
        const started = performance.now();
        const run = await runSchemathesis(target, key);
        expect(run.exitCode, failures(run)).toBe(0);
        // A run that reached little proves little: every operation ran, with many cases.
        expect(run.operations).toBeGreaterThanOrEqual(45);
        expect(run.generated).toBeGreaterThan(key === 'secret' ? 5000 : 1000);
        console.log(
          `schemathesis on ${database.name} with the ${key} key: ${run.operations} operations, ` +
            `${run.generated} test cases, ${((performance.now() - started) / 1000).toFixed(0)} s`,
        );
      }, 600_000);
    }
  });
}
