import { defineConfig } from 'vitest/config';

// `npm run test:vm-cluster` (root): lb1, web1 and web2 booted together under qemu on a bridge in a
// network namespace (docs/testing.md). Minutes to tens of minutes under software emulation.
export default defineConfig({
  test: {
    include: ['test/vm-cluster/**/*.test.ts'],
    // The CLI the tests run is the compiled one: build it first when the sources changed.
    globalSetup: ['test/helpers/compiled-cli.ts'],
    testTimeout: 5 * 60_000,
    hookTimeout: 75 * 60_000,
    teardownTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
