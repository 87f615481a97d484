import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native work is CPU-heavy on a 2-core machine: run files one at a time so
    // libtorch's threads don't fight each other, and give model tests room.
    fileParallelism: false,
    testTimeout: 60_000,
  },
});
