import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import { ChartCompositionError, composeInstanceChart, fullOptions } from '../../machines/compose-instance-chart.ts';
import { fromZodError } from '../common/issues.ts';
import { ProfileManifest } from '../schemas/profile-manifest.ts';
import { RoleManifest } from '../schemas/role-manifest.ts';
import type { Catalog, CatalogProblem, LoadedProfile, LoadedRole } from './catalog.ts';
import { manifestHash } from './manifest-hash.ts';
import { refuseNixStorePath } from './nix-store-guard.ts';

/** The manifests exported from this repository's nix/roles and nix/profiles (`npm run manifests`). */
export const BUILTIN_MANIFEST_DIR = fileURLToPath(new URL('../../nix/manifests', import.meta.url));

export class CatalogError extends Error {
  override readonly name = 'CatalogError';
  readonly code = 'MVM_ERR_CATALOG';
  constructor(readonly problems: CatalogProblem[]) {
    super(`role manifests could not be loaded:\n${problems.map((p) => `  ${p.file}${p.path ? ` at ${p.path}` : ''}: ${p.message}`).join('\n')}`);
  }
}

export interface LoadResult {
  catalog: Catalog;
  /** Manifests that were left out, and cross-manifest problems. Empty when all is well. */
  problems: CatalogProblem[];
}

async function jsonFilesIn(dir: string): Promise<string[] | undefined> {
  try {
    const names = await readdir(dir);
    return names.filter((n) => n.endsWith('.json')).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

async function readManifests<T extends { name: string }>(
  dir: string,
  schema: z.ZodType<T>,
  problems: CatalogProblem[],
): Promise<Map<string, { manifest: T; hash: string; source: string }>> {
  const out = new Map<string, { manifest: T; hash: string; source: string }>();
  const files = await jsonFilesIn(dir);
  if (files === undefined) {
    problems.push({ file: dir, path: '', message: 'directory does not exist' });
    return out;
  }
  for (const file of files) {
    const source = path.join(dir, file);
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(source, 'utf8'));
    } catch (error) {
      problems.push({ file: source, path: '', message: `not valid JSON: ${(error as Error).message}` });
      continue;
    }
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      for (const i of fromZodError(parsed.error)) problems.push({ file: source, path: i.path, message: i.message });
      continue;
    }
    const stem = file.slice(0, -'.json'.length);
    if (parsed.data.name !== stem) {
      problems.push({ file: source, path: 'name', message: `name is "${parsed.data.name}" but the file is ${file}; they must match` });
      continue;
    }
    out.set(stem, { manifest: parsed.data, hash: manifestHash(parsed.data), source });
  }
  return out;
}

/** Roles whose startup dependencies form a cycle, each cycle reported once. */
function dependencyCycles(roles: ReadonlyMap<string, LoadedRole>): string[][] {
  const cycles: string[][] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, trail: string[]) => {
    if (state.get(name) === 'done') return;
    if (state.get(name) === 'visiting') {
      cycles.push([...trail.slice(trail.indexOf(name)), name]);
      return;
    }
    state.set(name, 'visiting');
    for (const dep of roles.get(name)?.manifest.depends_on ?? []) if (roles.has(dep.role)) visit(dep.role, [...trail, name]);
    state.set(name, 'done');
  };
  for (const name of roles.keys()) visit(name, []);
  return cycles;
}

/**
 * Reads `<dir>/roles/*.json` and `<dir>/profiles/*.json`, validates each against its schema and
 * checks what spans manifests (profiles and dependencies exist, no dependency cycles). A bad
 * manifest is reported and left out; the others still load. Refuses directories in /nix/store.
 */
export async function loadCatalog(dir: string = BUILTIN_MANIFEST_DIR): Promise<LoadResult> {
  await refuseNixStorePath('manifest directory', dir);
  const problems: CatalogProblem[] = [];
  const profiles: Map<string, LoadedProfile> = await readManifests(path.join(dir, 'profiles'), ProfileManifest, problems);
  const roles: Map<string, LoadedRole> = await readManifests(path.join(dir, 'roles'), RoleManifest, problems);

  for (const [name, role] of roles) {
    const { allowed } = role.manifest.profiles;
    allowed.forEach((profile, index) => {
      if (!profiles.has(profile)) {
        problems.push({ file: role.source, path: `profiles.allowed[${index}]`, message: `role "${name}" allows profile "${profile}", which is not loaded` });
      }
    });
    role.manifest.depends_on.forEach((dep, index) => {
      if (!roles.has(dep.role)) {
        problems.push({ file: role.source, path: `depends_on[${index}].role`, message: `role "${name}" depends on role "${dep.role}", which is not loaded` });
      }
    });
  }
  // A manifest the statechart composer cannot honour is refused now, at load time, not when the
  // first instance of the role is created.
  for (const [name, role] of roles) {
    try {
      composeInstanceChart(role.manifest, fullOptions(role.manifest));
    } catch (error) {
      if (!(error instanceof ChartCompositionError)) throw error;
      problems.push({ file: role.source, path: error.field, message: error.message });
      roles.delete(name);
    }
  }
  for (const cycle of dependencyCycles(roles)) {
    const first = roles.get(cycle[0]!)!;
    problems.push({ file: first.source, path: 'depends_on', message: `startup dependency cycle: ${cycle.join(' -> ')}` });
  }
  return { catalog: { dir, roles, profiles }, problems };
}

/** Like loadCatalog, but any problem is an error: what a host uses before it obeys manifests. */
export async function loadCatalogStrict(dir?: string): Promise<Catalog> {
  const { catalog, problems } = await loadCatalog(dir);
  if (problems.length > 0) throw new CatalogError(problems);
  return catalog;
}
