import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { manifestHash } from '../catalog/manifest-hash.ts';
import { fromZodError } from '../common/issues.ts';
import { ProfileManifest } from '../schemas/profile-manifest.ts';
import { RoleManifest } from '../schemas/role-manifest.ts';
import { ArtifactError } from './artifact-error.ts';
import {
  BUNDLE_CONFIG_FILE,
  BUNDLE_MANIFEST_FILE,
  BUNDLE_PROFILE_FILE,
  BUNDLE_RECORD_FILE,
  copyAndHash,
  hashStoredFiles,
  listBundleFiles,
  type ImportProgress,
  type SourceFile,
} from './bundle-files.ts';
import { BundleId, BundleNameRecord, BundleRecord } from './bundle-record.ts';
import { bundlePaths, nixStoreReferences, specProblems, type ConfigProblem } from './firecracker-config-check.ts';

export type { ImportProgress } from './bundle-files.ts';

export interface BundleArtifacts {
  /** "sha256:<64 hex>": content hash over the bundle's files (names + bytes), computed at import. */
  hash: string;
  /** Names (bundle ids) that point at this hash, e.g. "gateway-2026-11-26". */
  names: string[];
  /** Absolute directory inside the artifact store (never under /nix/store). */
  dir: string;
  kernel: string;
  initrd: string | null;
  rootfs: string;
  /** The bundle's base Firecracker config (the `--config-file` shape), paths relative to the bundle. */
  baseConfig: Record<string, unknown>;
  /** The role manifest JSON the bundle carries, and its hash as src/catalog/manifest-hash.ts computes it. */
  manifest: unknown;
  manifestHash: string;
}

export interface ImportOptions {
  name?: string;
  onProgress?: (p: ImportProgress) => void;
}

const HASH_REF = /^sha256:([0-9a-f]{64})$/;
const BUNDLE_DIR = /^sha256-([0-9a-f]{64})$/;

function problemsText(file: string, problems: readonly ConfigProblem[]): string {
  return problems.map((p) => `  ✖ ${file}${p.field ? ` at ${p.field}` : ''}: ${p.message}`).join('\n');
}

async function readJson(file: string, label: string): Promise<unknown> {
  const text = await readFile(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ArtifactError('bundle-invalid', `${label} is not valid JSON (${(error as Error).message}); rebuild the bundle`, label);
  }
}

/**
 * The runtime's content-addressed store of role bundles. Layout under `rootDir`:
 *
 *   bundles/sha256-<hex>/        the bundle's files, read-only, plus .mvm-bundle.json (its record)
 *   bundles/.import-<random>/    an import in progress (renamed into place when complete)
 *   names/<id>.json              one file per bundle id: { name, hash }
 *
 * A bundle directory appears by one rename of a complete, synced copy, so a crash never leaves a
 * half bundle under its hash. Each name is its own file, created with link(2) (atomic and
 * exclusive), so concurrent imports cannot lose one another's names. Ids are immutable: an id
 * that means other bytes is refused, so a pool revision always boots the same bundle.
 */
export class ArtifactStore {
  readonly #bundles: string;
  readonly #names: string;

  constructor(readonly rootDir: string) {
    this.rootDir = path.resolve(rootDir);
    this.#bundles = path.join(this.rootDir, 'bundles');
    this.#names = path.join(this.rootDir, 'names');
  }

  /** Copies <srcDir> (dereferencing symlinks, refusing /nix/store paths inside configs) into the store; idempotent. */
  async import(srcDir: string, options: ImportOptions = {}): Promise<BundleArtifacts> {
    const name = options.name === undefined ? undefined : this.#checkName(options.name);
    const source = path.resolve(srcDir);
    const info = await stat(source).catch(() => undefined);
    if (!info?.isDirectory()) throw new ArtifactError('bundle-invalid', `${srcDir} is not a directory; give the bundle's directory (e.g. the \`result\` link of \`nix build .#bundle-gateway\`)`);
    const files = await listBundleFiles(source);
    const checked = await this.#checkSource(source, files);

    await mkdir(this.#bundles, { recursive: true });
    const staging = await mkdtemp(path.join(this.#bundles, '.import-'));
    let hash: string;
    try {
      const copied = await copyAndHash(files, staging, options.onProgress);
      hash = copied.hash;
      const record: BundleRecord = { schema_version: 1, hash, files: copied.files, ...checked.paths, role: checked.role, manifest_hash: checked.manifestHash };
      await writeFile(path.join(staging, BUNDLE_RECORD_FILE), `${JSON.stringify(BundleRecord.parse(record), null, 2)}\n`, { mode: 0o444 });
      for (const file of copied.files) await chmod(path.join(staging, file.name), 0o444);
      const target = this.#dirOf(hash);
      try {
        await rename(staging, target);
        await this.#makeReadOnly(target);
        await this.#syncDir(this.#bundles);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // Already stored (by an earlier import or a concurrent one): same hash, same bytes.
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      }
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
    if (name !== undefined) await this.#bindName(name, hash);
    return this.resolve(hash);
  }

  /** By id or "sha256:<hex>" (a pool revision's `artifacts`); throws ArtifactError (code 'bundle-unknown' | 'bundle-corrupt') naming the ref and the fix. */
  async resolve(ref: string): Promise<BundleArtifacts> {
    const hash = await this.#hashOf(ref);
    const { record, dir } = await this.#record(ref, hash);
    for (const file of record.files) {
      const info = await stat(path.join(dir, file.name)).catch(() => undefined);
      if (!info?.isFile() || info.size !== file.size) {
        throw new ArtifactError('bundle-corrupt', `bundle ${ref}: ${file.name} is ${info ? `${info.size} bytes, not ${file.size}` : 'missing'} in ${dir}; the store was altered. Remove the directory and import the bundle again`, file.name);
      }
    }
    return this.#artifacts(ref, hash, record, dir, await this.#namesByHash());
  }

  list(): Promise<BundleArtifacts[]> {
    return this.inventory().then((i) => i.bundles);
  }

  /** Every stored bundle, and the ones that cannot be resolved with the reason (for `bundle list`). */
  async inventory(): Promise<{ bundles: BundleArtifacts[]; problems: ArtifactError[] }> {
    const entries = await readdir(this.#bundles).catch(() => [] as string[]);
    const names = await this.#namesByHash();
    const bundles: BundleArtifacts[] = [];
    const problems: ArtifactError[] = [];
    for (const entry of entries.sort()) {
      const match = BUNDLE_DIR.exec(entry);
      if (!match) continue;
      const hash = `sha256:${match[1]}`;
      try {
        const { record, dir } = await this.#record(hash, hash);
        bundles.push(await this.#artifacts(hash, hash, record, dir, names));
      } catch (error) {
        if (error instanceof ArtifactError) problems.push(error);
        else throw error;
      }
    }
    return { bundles, problems };
  }

  /** Re-hashes the files; throws ArtifactError 'bundle-corrupt' on any mismatch. */
  async verify(ref: string): Promise<BundleArtifacts> {
    const hash = await this.#hashOf(ref);
    const { record, dir } = await this.#record(ref, hash);
    const expected = new Map(record.files.map((f) => [f.name, f]));
    const present = await listBundleFiles(dir, { storeCopy: true });
    for (const file of present) {
      if (!expected.has(file.name)) {
        throw new ArtifactError('bundle-corrupt', `bundle ${ref}: ${file.name} in ${dir} was not part of the import; the store was altered. Remove the directory and import the bundle again`, file.name);
      }
    }
    const presentNames = new Set(present.map((f) => f.name));
    for (const file of record.files) {
      if (!presentNames.has(file.name)) throw new ArtifactError('bundle-corrupt', `bundle ${ref}: ${file.name} is missing from ${dir}; remove the directory and import the bundle again`, file.name);
    }
    const rehashed = await hashStoredFiles(dir, record.files);
    for (const file of rehashed.files) {
      const want = expected.get(file.name);
      if (want && (want.sha256 !== file.sha256 || want.size !== file.size)) {
        throw new ArtifactError('bundle-corrupt', `bundle ${ref}: ${file.name} does not match its import (sha256 ${file.sha256.slice(0, 12)}…, recorded ${want.sha256.slice(0, 12)}…); the file was altered. Remove ${dir} and import the bundle again`, file.name);
      }
    }
    if (rehashed.hash !== hash) throw new ArtifactError('bundle-corrupt', `bundle ${ref}: its files hash to ${rehashed.hash}, not ${hash}; remove ${dir} and import the bundle again`);
    return this.resolve(hash);
  }

  #dirOf(hash: string): string {
    return path.join(this.#bundles, `sha256-${hash.slice('sha256:'.length)}`);
  }

  #checkName(name: string): string {
    const parsed = BundleId.safeParse(name);
    if (!parsed.success) throw new ArtifactError('bundle-invalid', `--name ${JSON.stringify(name)}: ${parsed.error.issues[0]?.message ?? 'invalid'}, e.g. "gateway-2026-11-26"`, undefined, 'name');
    return parsed.data;
  }

  /** Reads and checks everything but the bulk files, before any byte is copied. */
  async #checkSource(source: string, files: readonly SourceFile[]): Promise<{ paths: { kernel: string; initrd: string | null; rootfs: string }; role: string; manifestHash: string }> {
    const names = new Set(files.map((f) => f.name));
    for (const required of [BUNDLE_MANIFEST_FILE, BUNDLE_CONFIG_FILE]) {
      if (!names.has(required)) throw new ArtifactError('bundle-invalid', `${source} has no ${required}; a role bundle (nix/lib/bundle.nix) carries kernel, rootfs.ext4, ${BUNDLE_CONFIG_FILE} and ${BUNDLE_MANIFEST_FILE}`, required);
    }
    const parsedManifest = RoleManifest.safeParse(await readJson(path.join(source, BUNDLE_MANIFEST_FILE), BUNDLE_MANIFEST_FILE));
    if (!parsedManifest.success) {
      const issues = fromZodError(parsedManifest.error);
      throw new ArtifactError(
        'bundle-invalid',
        `${source}/${BUNDLE_MANIFEST_FILE} is not a valid role manifest:\n${problemsText(BUNDLE_MANIFEST_FILE, issues.map((i) => ({ field: i.path, message: i.message })))}`,
        BUNDLE_MANIFEST_FILE,
        issues[0]?.path,
      );
    }
    if (names.has(BUNDLE_PROFILE_FILE)) {
      const parsedProfile = ProfileManifest.safeParse(await readJson(path.join(source, BUNDLE_PROFILE_FILE), BUNDLE_PROFILE_FILE));
      if (!parsedProfile.success) {
        const issues = fromZodError(parsedProfile.error);
        throw new ArtifactError(
          'bundle-invalid',
          `${source}/${BUNDLE_PROFILE_FILE} is not a valid profile manifest:\n${problemsText(BUNDLE_PROFILE_FILE, issues.map((i) => ({ field: i.path, message: i.message })))}`,
          BUNDLE_PROFILE_FILE,
          issues[0]?.path,
        );
      }
    }
    const config = await readJson(path.join(source, BUNDLE_CONFIG_FILE), BUNDLE_CONFIG_FILE);
    if (config === null || typeof config !== 'object' || Array.isArray(config)) {
      throw new ArtifactError('bundle-invalid', `${source}/${BUNDLE_CONFIG_FILE} must be a JSON object (the \`firecracker --config-file\` document)`, BUNDLE_CONFIG_FILE);
    }
    const nix = nixStoreReferences(config);
    if (nix.length > 0) throw new ArtifactError('bundle-nix-store', `${source}/${BUNDLE_CONFIG_FILE} points into /nix/store:\n${problemsText(BUNDLE_CONFIG_FILE, nix)}`, BUNDLE_CONFIG_FILE, nix[0]?.field);
    const spec = await specProblems(config);
    if (spec.length > 0) {
      throw new ArtifactError('bundle-invalid', `${source}/${BUNDLE_CONFIG_FILE} breaks the Firecracker API spec (v1.16.1):\n${problemsText(BUNDLE_CONFIG_FILE, spec)}`, BUNDLE_CONFIG_FILE, spec[0]?.field);
    }
    const { paths, problems } = bundlePaths(config as Record<string, unknown>, names, parsedManifest.data.drives.map((d) => d.name));
    if (!paths) throw new ArtifactError('bundle-invalid', `${source}/${BUNDLE_CONFIG_FILE} does not fit the bundle:\n${problemsText(BUNDLE_CONFIG_FILE, problems)}`, BUNDLE_CONFIG_FILE, problems[0]?.field);
    return { paths, role: parsedManifest.data.name, manifestHash: manifestHash(parsedManifest.data) };
  }

  async #hashOf(ref: string): Promise<string> {
    const byHash = HASH_REF.exec(ref);
    if (byHash) return ref;
    if (!BundleId.safeParse(ref).success) {
      throw new ArtifactError('bundle-unknown', `bundle ${JSON.stringify(ref)} is neither a bundle id (lower-case letters, digits, ".", "_", "-") nor "sha256:" and 64 hex digits; see \`mvm-actors bundle list\``);
    }
    let raw: string;
    try {
      raw = await readFile(path.join(this.#names, `${ref}.json`), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      throw new ArtifactError('bundle-unknown', `no bundle named ${ref} in ${this.rootDir}; import it with \`mvm-actors bundle import <dir> --name ${ref}\`, or see \`mvm-actors bundle list\``);
    }
    const parsed = BundleNameRecord.safeParse(JSON.parse(raw));
    if (!parsed.success || parsed.data.name !== ref) throw new ArtifactError('bundle-corrupt', `the name record ${path.join(this.#names, `${ref}.json`)} is unreadable; delete it and import the bundle again with --name ${ref}`);
    return parsed.data.hash;
  }

  async #record(ref: string, hash: string): Promise<{ record: BundleRecord; dir: string }> {
    const dir = this.#dirOf(hash);
    let raw: string;
    try {
      raw = await readFile(path.join(dir, BUNDLE_RECORD_FILE), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      const exists = await stat(dir).then(() => true, () => false);
      if (exists) throw new ArtifactError('bundle-corrupt', `bundle ${ref}: ${dir} has no ${BUNDLE_RECORD_FILE}; remove the directory and import the bundle again`, BUNDLE_RECORD_FILE);
      throw new ArtifactError('bundle-unknown', `no bundle ${ref} in ${this.rootDir}${ref === hash ? '' : ` (the name points at ${hash}, which is gone)`}; import it with \`mvm-actors bundle import <dir>\``);
    }
    let parsed: ReturnType<typeof BundleRecord.safeParse>;
    try {
      parsed = BundleRecord.safeParse(JSON.parse(raw));
    } catch {
      parsed = BundleRecord.safeParse(undefined);
    }
    if (!parsed.success || parsed.data.hash !== hash) {
      throw new ArtifactError('bundle-corrupt', `bundle ${ref}: ${path.join(dir, BUNDLE_RECORD_FILE)} is unreadable or names another hash; remove ${dir} and import the bundle again`, BUNDLE_RECORD_FILE);
    }
    return { record: parsed.data, dir };
  }

  async #artifacts(ref: string, hash: string, record: BundleRecord, dir: string, names: Map<string, string[]>): Promise<BundleArtifacts> {
    const baseConfig = (await readJson(path.join(dir, BUNDLE_CONFIG_FILE), BUNDLE_CONFIG_FILE)) as Record<string, unknown>;
    const manifest = RoleManifest.safeParse(await readJson(path.join(dir, BUNDLE_MANIFEST_FILE), BUNDLE_MANIFEST_FILE));
    const hashOfManifest = manifest.success ? manifestHash(manifest.data) : undefined;
    if (!manifest.success || hashOfManifest !== record.manifest_hash) {
      throw new ArtifactError('bundle-corrupt', `bundle ${ref}: ${BUNDLE_MANIFEST_FILE} no longer matches its import; remove ${dir} and import the bundle again`, BUNDLE_MANIFEST_FILE);
    }
    return {
      hash,
      names: names.get(hash) ?? [],
      dir,
      kernel: path.join(dir, record.kernel),
      initrd: record.initrd === null ? null : path.join(dir, record.initrd),
      rootfs: path.join(dir, record.rootfs),
      baseConfig,
      manifest: manifest.data,
      manifestHash: record.manifest_hash,
    };
  }

  async #namesByHash(): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    const entries = await readdir(this.#names).catch(() => [] as string[]);
    for (const entry of entries.sort()) {
      if (!entry.endsWith('.json')) continue;
      const parsed = BundleNameRecord.safeParse(JSON.parse(await readFile(path.join(this.#names, entry), 'utf8').catch(() => 'null')));
      if (!parsed.success) continue;
      out.set(parsed.data.hash, [...(out.get(parsed.data.hash) ?? []), parsed.data.name]);
    }
    return out;
  }

  /** Points `name` at `hash`, once: link(2) fails if the name exists, so two imports cannot both win. */
  async #bindName(name: string, hash: string): Promise<void> {
    await mkdir(this.#names, { recursive: true });
    const final = path.join(this.#names, `${name}.json`);
    const temp = path.join(this.#names, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
    await writeFile(temp, `${JSON.stringify(BundleNameRecord.parse({ name, hash }))}\n`, { mode: 0o444 });
    try {
      await link(temp, final);
      await this.#syncDir(this.#names);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const existing = await this.#hashOf(name);
      if (existing !== hash) {
        throw new ArtifactError(
          'bundle-name-taken',
          `bundle id ${name} already names ${existing}; this bundle is ${hash} (it is stored under that hash). Ids never change meaning, so pool revisions stay reproducible: import it under a new id (e.g. --name ${name}-2)`,
          undefined,
          'name',
        );
      }
    } finally {
      await unlink(temp).catch(() => undefined);
    }
  }

  /** Directories 0555 (files were made 0444 before the rename): the store is never edited in place. */
  async #makeReadOnly(dir: string): Promise<void> {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) await this.#makeReadOnly(path.join(dir, entry.name));
    }
    await chmod(dir, 0o555);
  }

  async #syncDir(dir: string): Promise<void> {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}
