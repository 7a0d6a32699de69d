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
    // eventsource-parser (under the Vercel AI SDK) also exports a "source" condition, pointing at
    // its TypeScript: Vite transforms the SDK's chain of imports rather than Node loading .ts.
    server: { deps: { inline: [/node_modules\/(ai|@ai-sdk\/[^/]+|eventsource-parser)\//] } },
  },
});
