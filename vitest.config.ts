import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The CLI the tests run is the compiled one: build it first when the sources changed.
    globalSetup: ['test/helpers/compiled-cli.ts'],
    exclude: ['test/boot/**', 'test/cluster/**', 'test/vm-cluster/**', 'node_modules/**'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    pool: 'forks',
  },
});
