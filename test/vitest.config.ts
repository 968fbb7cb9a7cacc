import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('..', import.meta.url)),
    include: ['test/**/*.test.ts'],
    // Opt-in end-to-end tests (a real Firecracker) run with `npm run test:firecracker`.
    exclude: ['**/node_modules/**', 'test/**/*.e2e.test.ts'],
    // Nix evaluation and CLI tests start real processes; give them room on a 2-core machine.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
