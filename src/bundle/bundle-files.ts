import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { ArtifactError } from './artifact-error.ts';

/** The files of a role bundle the runtime reads by name (see nix/lib/bundle.nix). */
export const BUNDLE_CONFIG_FILE = 'firecracker-config.json';
export const BUNDLE_MANIFEST_FILE = 'manifest.json';
export const BUNDLE_PROFILE_FILE = 'profile.json';
/** The store's own record inside each bundle directory; not part of the content hash. */
export const BUNDLE_RECORD_FILE = '.mvm-bundle.json';

export interface SourceFile {
  /** Path relative to the bundle, with "/" separators. */
  name: string;
  /** Absolute path of the real file (symlinks resolved): what gets read. */
  path: string;
  size: number;
}

export interface ImportProgress {
  file: string;
  /** Bytes of `file` copied so far. */
  bytes: number;
  /** Size of `file`. */
  total: number;
}

export interface HashedFile {
  name: string;
  size: number;
  /** Hex sha256 of the file's bytes: lets `verify` name the file that changed. */
  sha256: string;
}

/** Code-unit order, not locale order: the hash must not depend on the machine's locale. */
function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * The regular files under `dir`, sorted by name. Symlinks are followed (a Nix output is often a
 * tree of links into /nix/store): what is imported is the content, never the link. Anything that
 * is not a file or directory (a socket, a device) is refused, and so is a directory reached twice
 * (a symlink loop). `storeCopy` lists a bundle directory of the store, without its record.
 */
export async function listBundleFiles(dir: string, options: { storeCopy?: boolean } = {}): Promise<SourceFile[]> {
  const out: SourceFile[] = [];
  const seenDirs = new Set<string>();
  const walk = async (abs: string, rel: string) => {
    const real = await realpath(abs);
    if (seenDirs.has(real)) throw new ArtifactError('bundle-invalid', `${rel || '.'} in ${dir} links back to a directory already imported (a symlink loop); remove the link`, rel);
    seenDirs.add(real);
    for (const entry of (await readdir(abs)).sort()) {
      const childAbs = path.join(abs, entry);
      const childRel = rel === '' ? entry : `${rel}/${entry}`;
      if (childRel === BUNDLE_RECORD_FILE) {
        // In a store copy it is the store's record; in a source bundle, a name the store reserves.
        if (options.storeCopy) continue;
        throw new ArtifactError('bundle-invalid', `${childRel} in ${dir} is a name the artifact store reserves for its own record; remove it from the bundle`, childRel);
      }
      const info = await stat(childAbs).catch((error: NodeJS.ErrnoException) => {
        throw new ArtifactError('bundle-invalid', `${childRel} in ${dir} cannot be read (${error.code ?? error.message}); a dangling symlink? Rebuild the bundle`, childRel);
      });
      if (info.isDirectory()) await walk(childAbs, childRel);
      else if (info.isFile()) out.push({ name: childRel, path: await realpath(childAbs), size: info.size });
      else throw new ArtifactError('bundle-invalid', `${childRel} in ${dir} is neither a file nor a directory; a bundle holds only files`, childRel);
    }
  };
  await walk(dir, '');
  return out.sort(byName);
}

/**
 * The bundle's content hash covers names and bytes: for each file in name order,
 * `<name> NUL <size> LF` and then its bytes. The size frames the bytes, so no two different
 * bundles hash the same stream.
 */
export function bundleHasher(): { hash: Hash; beginFile(name: string, size: number): void; digest(): string } {
  const hash = createHash('sha256');
  return {
    hash,
    beginFile: (name, size) => hash.update(`${name}\0${size}\n`),
    digest: () => `sha256:${hash.digest('hex')}`,
  };
}

const CHUNK = 1 << 20;

/**
 * Copies the files into `destDir` in one pass per file, hashing as it goes (what is hashed is
 * exactly what is written) and reporting progress per chunk. Each file is synced before the
 * caller renames the directory into place. Files are created 0600; the store makes them
 * read-only once the set is complete.
 */
export async function copyAndHash(
  files: readonly SourceFile[],
  destDir: string,
  onProgress?: (p: ImportProgress) => void,
): Promise<{ hash: string; files: HashedFile[] }> {
  const bundle = bundleHasher();
  const hashed: HashedFile[] = [];
  for (const file of files) {
    bundle.beginFile(file.name, file.size);
    const fileHash = createHash('sha256');
    const dest = path.join(destDir, file.name);
    await mkdir(path.dirname(dest), { recursive: true });
    const out = await open(dest, 'wx', 0o600);
    let bytes = 0;
    try {
      onProgress?.({ file: file.name, bytes: 0, total: file.size });
      for await (const chunk of createReadStream(file.path, { highWaterMark: CHUNK }) as AsyncIterable<Buffer>) {
        bundle.hash.update(chunk);
        fileHash.update(chunk);
        await out.write(chunk);
        bytes += chunk.length;
        onProgress?.({ file: file.name, bytes, total: file.size });
      }
      await out.sync();
    } finally {
      await out.close();
    }
    if (bytes !== file.size) {
      throw new ArtifactError('bundle-invalid', `${file.name} changed while it was being imported (${file.size} bytes listed, ${bytes} read); import again once the build has finished`, file.name);
    }
    hashed.push({ name: file.name, size: file.size, sha256: fileHash.digest('hex') });
  }
  return { hash: bundle.digest(), files: hashed };
}

/** Re-reads stored files (in the given order) and recomputes the bundle hash and each file's sha256. */
export async function hashStoredFiles(dir: string, files: readonly { name: string; size: number }[]): Promise<{ hash: string; files: HashedFile[] }> {
  const bundle = bundleHasher();
  const hashed: HashedFile[] = [];
  for (const file of [...files].sort(byName)) {
    const fileHash = createHash('sha256');
    let bytes = 0;
    const chunks: AsyncIterable<Buffer> = createReadStream(path.join(dir, file.name), { highWaterMark: CHUNK });
    // The framing uses the recorded size; a file whose size changed then fails its own sha256 too.
    bundle.beginFile(file.name, file.size);
    for await (const chunk of chunks) {
      bundle.hash.update(chunk);
      fileHash.update(chunk);
      bytes += chunk.length;
    }
    hashed.push({ name: file.name, size: bytes, sha256: fileHash.digest('hex') });
  }
  return { hash: bundle.digest(), files: hashed };
}
