import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/**
 * Opt-in end-to-end tests that need what the build machines cannot have (a Firecracker binary and
 * a Nix-built bundle): `npm run test:firecracker`. They fail, never skip, when their inputs are
 * missing; the default suite (vitest.config.ts) leaves them out.
 */
export default defineConfig({
  test: {
    root: fileURLToPath(new URL('..', import.meta.url)),
    include: ['test/**/*.e2e.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
