import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';
import type { Catalog } from '../../src/catalog/catalog.ts';
import { loadCatalogStrict } from '../../src/catalog/load-catalog.ts';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = path.join(REPO_ROOT, 'src/cli/bin.js');
export const EXAMPLE_DESIRED_STATE = path.join(REPO_ROOT, 'docs/examples/desired-state.json');

let builtin: Promise<Catalog> | undefined;
/** The built-in manifests (nix/manifests), loaded once per test file. */
export function builtinCatalog(): Promise<Catalog> {
  builtin ??= loadCatalogStrict();
  return builtin;
}

/** A fresh, valid desired-state document (the documented example) to mutate in a test. */
export function aDesiredState(): any {
  return JSON.parse(readFileSync(EXAMPLE_DESIRED_STATE, 'utf8'));
}

const tempDirs: string[] = [];
/** A temporary directory removed after the current test. */
export async function tempDir(prefix = 'mvm-actors-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}
afterEach(async () => {
  await Promise.all(tempDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});
