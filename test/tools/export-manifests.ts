/**
 * Developer tool (never used by the runtime, which does not run Nix): evaluates the Nix manifest
 * export and writes one JSON file per role and profile.
 *
 *   npm run manifests                       # nix/roles + nix/profiles -> nix/manifests/
 *   npm run manifests -- --roles DIR --out OUT   # add a directory of role files, write elsewhere
 */
import { execFile } from 'node:child_process';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';

const run = promisify(execFile);
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const EXPORT_EXPR = path.join(REPO_ROOT, 'nix/lib/export-manifests.nix');

export interface ManifestExport {
  schema_version: number;
  roles: Record<string, { name: string }>;
  profiles: Record<string, { name: string }>;
}

function nixList(dirs: string[]): string {
  // Nix path literals: absolute paths need no quoting as long as they have no spaces.
  for (const dir of dirs) if (/\s/.test(dir)) throw new Error(`directory ${dir} contains whitespace, which a Nix path literal cannot`);
  return `[ ${dirs.map((d) => path.resolve(d)).join(' ')} ]`;
}

/** Runs `nix-instantiate --eval --strict --json` on the export with the given directories. */
export async function evaluateManifests(roleDirs: string[], profileDirs: string[]): Promise<ManifestExport> {
  const { stdout } = await run(
    'nix-instantiate',
    ['--eval', '--strict', '--json', EXPORT_EXPR, '--arg', 'roleDirs', nixList(roleDirs), '--arg', 'profileDirs', nixList(profileDirs)],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  return JSON.parse(stdout) as ManifestExport;
}

export function manifestFileText(manifest: unknown): string {
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

/** Writes `<out>/roles/<name>.json` and `<out>/profiles/<name>.json`, removing files for names that are gone. */
export async function writeManifests(exported: ManifestExport, outDir: string): Promise<string[]> {
  const written: string[] = [];
  for (const [kind, entries] of [['roles', exported.roles], ['profiles', exported.profiles]] as const) {
    const dir = path.join(outDir, kind);
    await mkdir(dir, { recursive: true });
    const keep = new Set(Object.keys(entries).map((n) => `${n}.json`));
    for (const stale of (await readdir(dir)).filter((f) => f.endsWith('.json') && !keep.has(f))) await rm(path.join(dir, stale));
    for (const [name, manifest] of Object.entries(entries)) {
      const file = path.join(dir, `${name}.json`);
      await writeFile(file, manifestFileText(manifest));
      written.push(file);
    }
  }
  return written;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      roles: { type: 'string', multiple: true, default: [] },
      profiles: { type: 'string', multiple: true, default: [] },
      out: { type: 'string', default: path.join(REPO_ROOT, 'nix/manifests') },
    },
  });
  const exported = await evaluateManifests(
    [path.join(REPO_ROOT, 'nix/roles'), ...values.roles],
    [path.join(REPO_ROOT, 'nix/profiles'), ...values.profiles],
  );
  const written = await writeManifests(exported, values.out);
  console.log(`wrote ${written.length} manifests to ${path.relative(process.cwd(), values.out) || '.'}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error((error as { stderr?: string }).stderr || (error as Error).message);
    process.exit(1);
  });
}
