import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, mkdtemp, open, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';

/**
 * ext4 images for a microVM's drives, built as plain files with `mkfs.ext4 -d <staging>`: no
 * loop mount and no root needed. Config and secrets images are rebuilt whole (a new image, then
 * an atomic rename over the old one); the data image is created once and then belongs to the
 * guest.
 */

export class DriveImageError extends Error {
  override readonly name = 'DriveImageError';
  constructor(
    message: string,
    /** The option at fault (`label`, `files`, `sizeMib`, `path`), when it is one. */
    readonly field?: string,
  ) {
    super(message);
  }
}

/** ext4 volume labels hold at most 16 bytes; the guest mounts its drives by label. */
const MAX_LABEL_BYTES = 16;
const MIB = 1024 * 1024;
/** Block size mkfs.ext4 picks for small images; content is rounded up to it. */
const BLOCK = 4096;
/** Per file or directory: inode, directory entry and extent slack, generously. */
const PER_ENTRY_BYTES = 16 * 1024;
/** Superblock, group descriptors, bitmaps and inode tables of a small filesystem. */
const FIXED_OVERHEAD_BYTES = 1 * MIB;

/** Where mkfs.ext4 and debugfs live on Debian and NixOS hosts, even when PATH is a user's. */
function toolEnv(): NodeJS.ProcessEnv {
  return { PATH: [process.env.PATH, '/usr/sbin', '/sbin', '/run/current-system/sw/bin'].filter(Boolean).join(':') };
}

async function run(tool: string, args: string[], what: string): Promise<void> {
  try {
    await execa(tool, args, { env: toolEnv(), stdin: 'ignore' });
  } catch (error) {
    const e = error as { code?: string; stderr?: string; shortMessage?: string };
    if (e.code === 'ENOENT') throw new DriveImageError(`${tool} was not found; install e2fsprogs (it provides mkfs.ext4 and debugfs) to build ${what}`);
    throw new DriveImageError(`${tool} failed building ${what}: ${(e.stderr ?? '').trim() || e.shortMessage}`);
  }
}

function checkLabel(label: string): void {
  if (label.length === 0 || Buffer.byteLength(label) > MAX_LABEL_BYTES || !/^[A-Za-z0-9._-]+$/.test(label)) {
    throw new DriveImageError(`label ${JSON.stringify(label)}: an ext4 label is 1 to ${MAX_LABEL_BYTES} characters of letters, digits, ".", "_" or "-" (e.g. "mvm-config")`, 'label');
  }
}

/** `a/b.json` stays; absolute paths, `..`, `.` and empty segments are refused: files land inside the image. */
function checkFilePath(name: string): string {
  const normalized = path.posix.normalize(name);
  if (name === '' || path.posix.isAbsolute(name) || normalized !== name || normalized === '.' || normalized.split('/').includes('..')) {
    throw new DriveImageError(`files[${JSON.stringify(name)}]: a file path is relative to the image's root, without "..", "." or "//" (e.g. "pool.json" or "connectors/telegram.json")`, 'files');
  }
  return normalized;
}

/** Size that fits the content with room for the filesystem's own structures and some headroom. */
export function imageSizeMib(files: Record<string, string>): number {
  const entries = Object.keys(files).length + new Set(Object.keys(files).flatMap((f) => f.split('/').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('/')))).size;
  const content = Object.values(files).reduce((sum, text) => sum + Math.ceil(Buffer.byteLength(text) / BLOCK) * BLOCK, 0);
  const bytes = FIXED_OVERHEAD_BYTES + entries * PER_ENTRY_BYTES + Math.ceil(content * 1.25);
  return Math.max(2, Math.ceil(bytes / MIB));
}

/** An empty sparse file of `sizeMib`, private to this user (an image may hold secrets). */
async function sparseFile(file: string, sizeMib: number): Promise<void> {
  const handle = await open(file, 'wx', 0o600);
  try {
    await handle.truncate(sizeMib * MIB);
  } finally {
    await handle.close();
  }
}

function tempNameFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.tmp-${randomBytes(6).toString('hex')}`);
}

/** Builds (or rebuilds) an image holding exactly `files` (path relative to the fs root -> content), with `label`; size computed from content unless given. Atomic (write temp, rename). */
export async function buildFilesImage(opts: { path: string; label: string; files: Record<string, string>; sizeMib?: number; fileMode?: number }): Promise<void> {
  checkLabel(opts.label);
  const names = Object.keys(opts.files).map(checkFilePath);
  const fileMode = opts.fileMode ?? 0o644;
  // A private file set (e.g. secrets at 0600) gets private directories, the image's root included.
  const isPrivate = (fileMode & 0o077) === 0;
  const dirMode = isPrivate ? 0o700 : 0o755;
  const sizeMib = opts.sizeMib ?? imageSizeMib(opts.files);
  if (!Number.isInteger(sizeMib) || sizeMib < 1) throw new DriveImageError(`sizeMib ${sizeMib}: give a whole number of MiB, 1 or more (or leave it out to size the image from its content)`, 'sizeMib');

  const image = path.resolve(opts.path);
  await mkdir(path.dirname(image), { recursive: true });
  // Staging next to the image (same filesystem, same owner), created 0700 by mkdtemp, so the
  // files' content is never readable by others even for the moment it exists.
  const staging = await mkdtemp(path.join(path.dirname(image), `.${path.basename(image)}.staging-`));
  const temp = tempNameFor(image);
  try {
    for (const name of names) {
      const target = path.join(staging, name);
      await mkdir(path.dirname(target), { recursive: true, mode: dirMode });
      await writeFile(target, opts.files[name] ?? '', { mode: fileMode });
      await chmod(target, fileMode); // the umask may have cleared bits the caller asked for
    }
    await sparseFile(temp, sizeMib);
    // No journal: these drives are mounted read-only and rebuilt, never repaired.
    // root_owner=0:0: the image's root belongs to the guest's root, whoever built it on the host.
    await run('mkfs.ext4', ['-q', '-F', '-L', opts.label, '-d', staging, '-O', '^has_journal', '-m', '0', '-E', 'root_owner=0:0', temp], `the ${opts.label} image`);
    // mkfs.ext4 -d gives the root directory 0755 whatever the staging dir's mode.
    if (isPrivate) await run('debugfs', ['-w', '-R', 'sif / mode 040700', temp], `the ${opts.label} image`);
    await rename(temp, image);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** Creates an empty ext4 data image of sizeMib once; an existing image is kept untouched (returns false). */
export async function ensureDataImage(opts: { path: string; label: string; sizeMib: number }): Promise<boolean> {
  checkLabel(opts.label);
  if (!Number.isInteger(opts.sizeMib) || opts.sizeMib < 8) {
    throw new DriveImageError(`sizeMib ${opts.sizeMib}: a data image needs a whole number of MiB, at least 8 (room for the ext4 journal); check the profile's data_disk_mib`, 'sizeMib');
  }
  const image = path.resolve(opts.path);
  if (await stat(image).then(() => true, () => false)) return false;
  await mkdir(path.dirname(image), { recursive: true });
  const temp = tempNameFor(image);
  try {
    await sparseFile(temp, opts.sizeMib);
    // A journal, unlike the read-only drives: the guest writes here and must survive a crash.
    await run('mkfs.ext4', ['-q', '-F', '-L', opts.label, '-m', '0', '-E', 'root_owner=0:0', temp], `the ${opts.label} image`);
    // link(2) rather than rename(2): it never replaces an image created meanwhile (the guest's data).
    await link(temp, image);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}
