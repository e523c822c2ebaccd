import { defineConfig } from 'vitest/config';

// `npm run test:status`: pibake status against the shipped cluster in network namespaces (root
// only; see docs/cluster-test.md). Kept apart from test:cluster so each has its own time limit.
export default defineConfig({
  test: {
    include: ['test/cluster/status.test.ts'],
    // The CLI the tests run is the compiled one: build it first when the sources changed.
    globalSetup: ['test/helpers/compiled-cli.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
