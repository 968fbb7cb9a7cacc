import { randomBytes } from 'node:crypto';
import { chmod, chown, copyFile, link, lstat, mkdir, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';

/**
 * Running Firecracker under its jailer (docs/jailer.md of Firecracker v1.16): one uid/gid per
 * instance, a chroot at `<chroot-base>/<exec-file name>/<id>/root`, cgroup v2 limits from the
 * pool's resources, and the files the VM opens hard-linked into the chroot beforehand (the
 * jailed process cannot see anything else).
 */

export interface JailPlan {
  chrootDir: string;
  uid: number;
  gid: number;
  argv: string[];
  /** host path -> path inside the chroot, hard-linked (copy across devices) */
  links: Record<string, string>;
  cgroups: Record<string, string>;
}

export class JailError extends Error {
  override readonly name = 'JailError';
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** Firecracker's API socket inside the jail (its default, `--api-sock`); on the host: `<chrootDir>/run/firecracker.socket`. */
export const JAILED_API_SOCKET = '/run/firecracker.socket';

/** The kernel's default CFS period; cpu.max grants `vcpus` periods of CPU time per period. */
export const CPU_PERIOD_US = 100_000;

/**
 * memory.max is the guest's memory plus room for the VMM itself (its own heap, virtio queues,
 * page tables, the API thread). Firecracker documents an overhead of a few MiB; 64 MiB leaves
 * margin so the cgroup never OOM-kills a guest that uses all its own memory.
 */
export const VMM_MEMORY_OVERHEAD_MIB = 64;

/**
 * Per-instance uid/gid: `base + index`, the same number for both. `index` must be unique per host
 * and stable across restarts for as long as the instance's files exist; the instance's vsock CID
 * is (the host allocates and persists it). The default base, 1,000,000, lies above normal users,
 * system accounts and the usual /etc/subuid ranges (100000 + 65536 per user), so a jailed VMM
 * never shares an id with anything else on the host. `capacity` bounds the range so it can be
 * reserved as a whole.
 */
export const DEFAULT_JAIL_ID_BASE = 1_000_000;
export const DEFAULT_JAIL_ID_CAPACITY = 1 << 20;

export function jailIdsFor(index: number, base = DEFAULT_JAIL_ID_BASE, capacity = DEFAULT_JAIL_ID_CAPACITY): { uid: number; gid: number } {
  if (!Number.isSafeInteger(index) || index < 0 || index >= capacity) {
    throw new JailError(`jail id index ${index}: give a whole number from 0 to ${capacity - 1} that is unique per host (e.g. the instance's vsock CID)`, 'index');
  }
  const id = base + index;
  // 2^32-1 is (uid_t)-1, "no change" to chown(2); 65534 is nobody.
  if (!Number.isSafeInteger(base) || base <= 65_534 || id >= 2 ** 32 - 1) throw new JailError(`jail id base ${base}: give a base above 65534 whose range ends below 4294967295`, 'base');
  return { uid: id, gid: id };
}

const JAILER_ID = /^[A-Za-z0-9-]{1,64}$/;

/** `/kernel`, `drives/data.ext4` -> `/kernel`, `/drives/data.ext4`; refuses escapes from the jail. */
function jailPath(hostPath: string, inside: string): string {
  const normalized = path.posix.normalize(`/${inside.replace(/^\/+/, '')}`);
  if (inside === '' || normalized === '/' || inside.split('/').includes('..')) {
    throw new JailError(`files[${JSON.stringify(hostPath)}] = ${JSON.stringify(inside)}: the path inside the chroot must name a file below its root, without ".."`, 'files');
  }
  return normalized;
}

/** The jailer command line and everything prepareChroot needs, computed without touching the host. */
export function planJail(opts: {
  jailerBin: string;
  firecrackerBin: string;
  instanceId: string;
  chrootBase: string;
  uid: number;
  gid: number;
  resources: { vcpus: number; memory_mib: number };
  files: Record<string, string>;
}): JailPlan {
  if (!JAILER_ID.test(opts.instanceId)) {
    throw new JailError(`instanceId ${JSON.stringify(opts.instanceId)}: the jailer accepts 1 to 64 letters, digits and "-"`, 'instanceId');
  }
  const execName = path.basename(opts.firecrackerBin);
  if (!execName.includes('firecracker')) {
    throw new JailError(`firecrackerBin ${opts.firecrackerBin}: the jailer runs only a file whose name contains "firecracker"; rename or link the binary`, 'firecrackerBin');
  }
  if (!path.isAbsolute(opts.chrootBase)) throw new JailError(`chrootBase ${opts.chrootBase}: give an absolute directory (e.g. /srv/jailer)`, 'chrootBase');
  for (const key of ['uid', 'gid'] as const) {
    if (!Number.isSafeInteger(opts[key]) || opts[key] <= 0) throw new JailError(`${key} ${opts[key]}: a jailed VMM runs as its own non-root id (see jailIdsFor)`, key);
  }
  const { vcpus, memory_mib } = opts.resources;
  if (!Number.isSafeInteger(vcpus) || vcpus < 1) throw new JailError(`resources.vcpus ${vcpus}: give 1 or more`, 'resources.vcpus');
  if (!Number.isSafeInteger(memory_mib) || memory_mib < 1) throw new JailError(`resources.memory_mib ${memory_mib}: give 1 or more`, 'resources.memory_mib');

  const links: Record<string, string> = {};
  const taken = new Map<string, string>();
  for (const [hostPath, inside] of Object.entries(opts.files)) {
    if (!path.isAbsolute(hostPath)) {
      const hint = path.isAbsolute(inside) ? '; files maps host path -> path inside the chroot, these look swapped' : '';
      throw new JailError(`files: ${JSON.stringify(hostPath)} is not an absolute host path${hint}`, 'files');
    }
    const target = jailPath(hostPath, inside);
    const other = taken.get(target);
    if (other !== undefined) throw new JailError(`files: ${other} and ${hostPath} both go to ${target} inside the chroot; give each its own name`, 'files');
    taken.set(target, hostPath);
    links[path.resolve(hostPath)] = target;
  }

  const cgroups: Record<string, string> = {
    'cpu.max': `${vcpus * CPU_PERIOD_US} ${CPU_PERIOD_US}`,
    'memory.max': String((memory_mib + VMM_MEMORY_OVERHEAD_MIB) * 1024 * 1024),
  };
  const argv = [
    opts.jailerBin,
    '--id', opts.instanceId,
    '--exec-file', opts.firecrackerBin,
    '--uid', String(opts.uid),
    '--gid', String(opts.gid),
    '--chroot-base-dir', opts.chrootBase,
    '--cgroup-version', '2',
    ...Object.entries(cgroups).flatMap(([file, value]) => ['--cgroup', `${file}=${value}`]),
    '--',
    '--api-sock', JAILED_API_SOCKET,
  ];
  return { chrootDir: path.join(opts.chrootBase, execName, opts.instanceId, 'root'), uid: opts.uid, gid: opts.gid, argv, links, cgroups };
}

/** Where a planned jail's API socket appears on the host. */
export function jailApiSocket(plan: JailPlan): string {
  return path.join(plan.chrootDir, JAILED_API_SOCKET);
}

/**
 * Read-only for everyone and world-readable: an artifact shared by every instance (the store's
 * kernel and root image, 0444). A hard link shares the inode, so chowning it to one instance's
 * uid would take it from the others; it needs no chown to be readable.
 */
function isSharedReadOnly(mode: number): boolean {
  return (mode & 0o222) === 0 && (mode & 0o004) !== 0;
}

/**
 * Hard-links each file into the chroot (copying when the chroot is on another filesystem, or
 * when the kernel refuses the link), makes the instance's own files its uid/gid's, and creates
 * the jail's /run for the API socket. Idempotent: a link already to the same inode is kept, a
 * stale one is replaced atomically.
 */
export async function prepareChroot(plan: JailPlan): Promise<void> {
  const asRoot = process.getuid?.() === 0;
  await mkdir(plan.chrootDir, { recursive: true });
  const run = path.join(plan.chrootDir, path.posix.dirname(JAILED_API_SOCKET));
  await mkdir(run, { recursive: true, mode: 0o700 });
  if (asRoot) await chown(run, plan.uid, plan.gid);

  for (const [hostPath, inside] of Object.entries(plan.links)) {
    const source = await stat(hostPath).catch(() => {
      throw new JailError(`${hostPath} does not exist; it is to be linked into the jail as ${inside}. Build the drive images before preparing the chroot`, 'links');
    });
    const target = path.join(plan.chrootDir, inside);
    await mkdir(path.dirname(target), { recursive: true });
    const existing = await lstat(target).catch(() => undefined);
    const sameInode = existing !== undefined && existing.ino === source.ino && existing.dev === source.dev;
    // A copy made (across devices) after the source last changed is current: no second copy of a root image.
    const currentCopy = existing !== undefined && existing.isFile() && existing.dev !== source.dev && existing.size === source.size && existing.mtimeMs >= source.mtimeMs;
    if (!sameInode && !currentCopy) {
      const temp = `${target}.link-${randomBytes(6).toString('hex')}`;
      try {
        await link(hostPath, temp);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // EXDEV: another filesystem; EPERM: protected_hardlinks refuses a link to a file we do not own.
        if (code !== 'EXDEV' && code !== 'EPERM') throw error;
        await copyFile(hostPath, temp);
        await chmod(temp, source.mode & 0o7777);
      }
      await rename(temp, target).catch(async (error: unknown) => {
        await unlink(temp).catch(() => undefined);
        throw error;
      });
    }
    if (asRoot && !isSharedReadOnly(source.mode)) await chown(target, plan.uid, plan.gid);
  }
}
