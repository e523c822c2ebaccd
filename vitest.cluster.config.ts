import { defineConfig } from 'vitest/config';

// `npm run test:cluster`: the shipped cluster in network namespaces (root only; see docs/cluster-test.md).
export default defineConfig({
  test: {
    include: ['test/cluster/**/*.test.ts'],
    exclude: ['test/cluster/status.test.ts'], // npm run test:status
    // The CLI the tests run is the compiled one: build it first when the sources changed.
    globalSetup: ['test/helpers/compiled-cli.ts'],
    testTimeout: 150_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
