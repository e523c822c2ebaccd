import { defineConfig } from 'vitest/config';

// The boot test (npm run test:boot): boots images under qemu (TCG), minutes per node, so it is
// kept out of the default suite. The test base is built in beforeAll when the cache has none.
export default defineConfig({
  test: {
    include: ['test/boot/**/*.test.ts'],
    // The CLI the tests run is the compiled one: build it first when the sources changed.
    globalSetup: ['test/helpers/compiled-cli.ts'],
    testTimeout: 50 * 60_000,
    hookTimeout: 45 * 60_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
