import path from 'node:path';
import { ArtifactError } from '../../bundle/artifact-error.ts';
import { ArtifactStore, type BundleArtifacts, type ImportProgress } from '../../bundle/artifact-store.ts';
import { defaultDataDir } from '../data-dir.ts';
import { EXIT, printJson, UsageError, type Output } from '../output.ts';

export interface BundleOptions {
  args: string[];
  json: boolean;
  name?: string | undefined;
  artifactsDir?: string | undefined;
  dataDir?: string | undefined;
}

/** The store `bundle` works on: --artifacts-dir, else <data-dir>/artifacts (where `serve` looks). */
export function artifactsDirFor(options: { artifactsDir?: string | undefined; dataDir?: string | undefined }): string {
  return path.resolve(options.artifactsDir ?? path.join(options.dataDir ?? defaultDataDir(), 'artifacts'));
}

const MIB = 1024 * 1024;
const mib = (bytes: number) => `${(bytes / MIB).toFixed(1)} MiB`;
const size = (bytes: number) => (bytes < MIB ? `${(bytes / 1024).toFixed(1)} KiB` : mib(bytes));

/** The record as `--json` prints it: the library's BundleArtifacts, with the manifest summarized by name. */
function jsonRecord(b: BundleArtifacts) {
  return { ...b, role: (b.manifest as { name?: string }).name ?? null };
}

function summary(b: BundleArtifacts): string {
  const role = (b.manifest as { name?: string }).name ?? '?';
  return `${b.hash}  role ${role}  ${b.names.length > 0 ? `names ${b.names.join(', ')}` : '(no name)'}\n  ${b.dir}`;
}

/** Progress lines on stderr: one at the start of each file, then every 10% of a large one. */
function progressPrinter(output: Output): (p: ImportProgress) => void {
  let current = '';
  let lastDecile = -1;
  return (p) => {
    if (p.file !== current) {
      current = p.file;
      lastDecile = -1;
    }
    if (p.total < 8 * MIB) {
      if (p.bytes === p.total) output.err(`  ${p.file}  ${size(p.total)}`);
      return;
    }
    const decile = Math.floor((p.bytes / p.total) * 10);
    if (decile === lastDecile) return;
    lastDecile = decile;
    output.err(`  ${p.file}  ${decile * 10}%  (${mib(p.bytes)} of ${mib(p.total)})`);
  };
}

/** `mvm-actors bundle import|list|verify`: the artifact store of role bundles on this host. */
export async function bundleCommand(options: BundleOptions, output: Output): Promise<number> {
  const [sub, ...rest] = options.args;
  const store = new ArtifactStore(artifactsDirFor(options));
  const expectArgs = (max: number) => {
    if (rest.length > max) throw new UsageError(`bundle ${sub}: unexpected argument "${rest[max]}"`);
  };
  try {
    switch (sub) {
      case 'import': {
        expectArgs(1);
        const dir = rest[0];
        if (dir === undefined) throw new UsageError('bundle import: give the bundle directory, e.g. `mvm-actors bundle import ./result --name gateway-2026-11-26`');
        output.err(`importing ${dir} into ${store.rootDir}`);
        const bundle = await store.import(dir, { name: options.name, onProgress: progressPrinter(output) });
        if (options.json) printJson(output, jsonRecord(bundle));
        else output.out(`imported ${summary(bundle)}`);
        return EXIT.ok;
      }
      case 'list': {
        expectArgs(0);
        const { bundles, problems } = await store.inventory();
        if (options.json) printJson(output, { artifacts_dir: store.rootDir, bundles: bundles.map(jsonRecord), problems: problems.map((p) => ({ code: p.code, message: p.message })) });
        else {
          output.out(`${bundles.length} bundle(s) in ${store.rootDir}${bundles.length > 0 ? '\n' : ''}`);
          if (bundles.length > 0) output.out(bundles.map(summary).join('\n'));
          for (const p of problems) output.err(`  ✖ ${p.message}`);
        }
        return problems.length > 0 ? EXIT.invalid : EXIT.ok;
      }
      case 'verify': {
        expectArgs(1);
        const ref = rest[0];
        if (ref === undefined) throw new UsageError('bundle verify: name the bundle, by id or "sha256:<hex>" (see `mvm-actors bundle list`)');
        const bundle = await store.verify(ref);
        if (options.json) printJson(output, jsonRecord(bundle));
        else output.out(`ok ${summary(bundle)}`);
        return EXIT.ok;
      }
      default:
        throw new UsageError(sub === undefined ? 'bundle: give a subcommand: import <dir>, list or verify <ref>' : `bundle: unknown subcommand "${sub}"; use import, list or verify`);
    }
  } catch (error) {
    if (!(error instanceof ArtifactError)) throw error;
    if (options.json) printJson(output, { error: { code: error.code, message: error.message, file: error.file ?? null, field: error.field ?? null } });
    output.err(`mvm-actors: ${error.message}`);
    return EXIT.invalid;
  }
}
