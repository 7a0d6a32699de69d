import { defineConfig } from 'vitest/config';

// Tests import workspace packages by their TypeScript sources (the "source" export condition),
// so `make test` needs no build step before vitest and stack traces point at real files.
export default defineConfig({
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'] } },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'bench/**/*.test.ts', 'scripts/**/*.test.ts'],
    // bench/.work holds competitors' installs and scratch copies, never our tests.
    exclude: ['**/node_modules/**', 'bench/.work/**'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two test files at a time. Vitest's default is one fewer than the cores: one at a time on a
    // 2-core machine (CI's), where most files wait on servers, subprocesses and databases rather
    // than compute, so the suite took 1,006 s for 910 s of tests. The whole suite passed with two
    // even with other work keeping the load average at 5 to 9.
    maxWorkers: 2,
    // eventsource-parser (under the Vercel AI SDK) also exports a "source" condition, pointing at
    // its TypeScript: Vite transforms the SDK's chain of imports rather than Node loading .ts.
    server: { deps: { inline: [/node_modules\/(ai|@ai-sdk\/[^/]+|eventsource-parser)\//] } },
  },
});
