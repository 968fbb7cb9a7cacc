import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CPU_PERIOD_US, DEFAULT_JAIL_ID_BASE, jailApiSocket, JailError, jailIdsFor, planJail, prepareChroot, VMM_MEMORY_OVERHEAD_MIB } from '../../src/firecracker/jailer.ts';

const dirs: string[] = [];
async function scratch(base = tmpdir()): Promise<string> {
  const dir = await mkdtemp(path.join(base, 'mvm-jail-test-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

const asRoot = process.getuid?.() === 0;

function aPlan(overrides: Partial<Parameters<typeof planJail>[0]> = {}) {
  return planJail({
    jailerBin: '/usr/local/bin/jailer',
    firecrackerBin: '/usr/local/bin/firecracker',
    instanceId: 'acme-gateway-0',
    chrootBase: '/srv/jailer',
    uid: 1_000_003,
    gid: 1_000_003,
    resources: { vcpus: 2, memory_mib: 1024 },
    files: { '/var/lib/mvm/artifacts/k/kernel': 'kernel', '/var/lib/mvm/vm/acme-gateway-0/data.ext4': '/drives/data.ext4' },
    ...overrides,
  });
}

describe('planJail', () => {
  it('builds the jailer argv in the documented shape, then Firecracker args after --', () => {
    const plan = aPlan();
    expect(plan.argv).toEqual([
      '/usr/local/bin/jailer',
      '--id', 'acme-gateway-0',
      '--exec-file', '/usr/local/bin/firecracker',
      '--uid', '1000003',
      '--gid', '1000003',
      '--chroot-base-dir', '/srv/jailer',
      '--cgroup-version', '2',
      '--cgroup', 'cpu.max=200000 100000',
      '--cgroup', `memory.max=${(1024 + 64) * 1024 * 1024}`,
      '--',
      '--api-sock', '/run/firecracker.socket',
    ]);
    // The chroot the jailer will create: <base>/<exec-file name>/<id>/root.
    expect(plan.chrootDir).toBe('/srv/jailer/firecracker/acme-gateway-0/root');
    expect(jailApiSocket(plan)).toBe('/srv/jailer/firecracker/acme-gateway-0/root/run/firecracker.socket');
    expect(plan.links).toEqual({ '/var/lib/mvm/artifacts/k/kernel': '/kernel', '/var/lib/mvm/vm/acme-gateway-0/data.ext4': '/drives/data.ext4' });
    expect([plan.uid, plan.gid]).toEqual([1_000_003, 1_000_003]);
  });

  it('derives cgroup v2 limits from the resources', () => {
    for (const [vcpus, memory_mib] of [[1, 512], [4, 8192], [32, 262_144]] as const) {
      const { cgroups } = aPlan({ resources: { vcpus, memory_mib } });
      expect(cgroups['cpu.max']).toBe(`${vcpus * CPU_PERIOD_US} ${CPU_PERIOD_US}`);
      expect(Number(cgroups['memory.max'])).toBe((memory_mib + VMM_MEMORY_OVERHEAD_MIB) * 1024 * 1024);
    }
  });

  it.each([
    ['an id the jailer refuses', { instanceId: 'acme_gateway.0' }, 'instanceId'],
    ['an exec file not named firecracker', { firecrackerBin: '/usr/bin/fc' }, 'firecrackerBin'],
    ['root as the jail user', { uid: 0 }, 'uid'],
    ['a relative chroot base', { chrootBase: 'srv' }, 'chrootBase'],
    ['no memory', { resources: { vcpus: 1, memory_mib: 0 } }, 'resources.memory_mib'],
    ['a path escaping the jail', { files: { '/a/kernel': '../kernel' } }, 'files'],
    ['swapped file mapping', { files: { kernel: '/a/kernel' } }, 'files'],
    ['two files on one jail path', { files: { '/a/kernel': 'kernel', '/b/kernel': '/kernel' } }, 'files'],
  ])('refuses %s, naming the field', (_what, overrides, field) => {
    let error: unknown;
    try {
      aPlan(overrides as any);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(JailError);
    expect((error as JailError).field).toBe(field);
  });

  it('tells a swapped mapping apart', () => {
    expect(() => aPlan({ files: { kernel: '/a/kernel' } })).toThrow(/these look swapped/);
  });
});

describe('jailIdsFor', () => {
  it('is base + index, deterministic, and bounded', () => {
    expect(jailIdsFor(3)).toEqual({ uid: DEFAULT_JAIL_ID_BASE + 3, gid: DEFAULT_JAIL_ID_BASE + 3 });
    expect(jailIdsFor(3)).toEqual(jailIdsFor(3));
    expect(jailIdsFor(7, 200_000)).toEqual({ uid: 200_007, gid: 200_007 });
    expect(() => jailIdsFor(-1)).toThrow(/index -1/);
    expect(() => jailIdsFor(10, 200_000, 10)).toThrow(/from 0 to 9/);
    expect(() => jailIdsFor(1, 1000)).toThrow(/base 1000/);
  });
});

describe('prepareChroot', () => {
  async function files(dir: string) {
    const kernel = path.join(dir, 'artifacts', 'kernel');
    const data = path.join(dir, 'vm', 'data.ext4');
    await mkdir(path.dirname(kernel), { recursive: true });
    await mkdir(path.dirname(data), { recursive: true });
    await writeFile(kernel, 'vmlinux');
    await chmod(kernel, 0o444); // a store artifact, shared by every instance
    await writeFile(data, 'data image', { mode: 0o600 });
    return { kernel, data };
  }

  it('hard-links the files into <chroot>/root (same inode), idempotently, and owns the instance files to its uid', async () => {
    const dir = await scratch();
    const { kernel, data } = await files(dir);
    const plan = aPlan({ chrootBase: path.join(dir, 'jail'), files: { [kernel]: 'kernel', [data]: 'drives/data.ext4' } });
    await prepareChroot(plan);
    const linkedKernel = path.join(plan.chrootDir, 'kernel');
    const linkedData = path.join(plan.chrootDir, 'drives', 'data.ext4');
    expect((await stat(linkedKernel)).ino).toBe((await stat(kernel)).ino);
    expect((await stat(linkedData)).ino).toBe((await stat(data)).ino);
    expect((await stat(kernel)).nlink).toBe(2);
    expect((await stat(path.join(plan.chrootDir, 'run'))).isDirectory()).toBe(true);

    if (asRoot) {
      // The instance's own drive belongs to its uid; the shared kernel keeps its owner.
      expect((await stat(linkedData)).uid).toBe(plan.uid);
      expect((await stat(linkedData)).gid).toBe(plan.gid);
      expect((await stat(path.join(plan.chrootDir, 'run'))).uid).toBe(plan.uid);
      expect((await stat(linkedKernel)).uid).toBe(0);
    }

    // Again: nothing changes. Then the data image is replaced (a new inode): the link follows it.
    await prepareChroot(plan);
    expect((await stat(kernel)).nlink).toBe(2);
    await rm(data);
    await writeFile(data, 'new image', { mode: 0o600 });
    await prepareChroot(plan);
    expect((await stat(linkedData)).ino).toBe((await stat(data)).ino);
    expect(await readFile(linkedData, 'utf8')).toBe('new image');
  });

  it('copies when the chroot is on another filesystem, and does not copy again', async () => {
    const shm = await stat('/dev/shm').then((s) => s.isDirectory(), () => false);
    expect(shm, 'this test needs /dev/shm (tmpfs) as a second filesystem').toBe(true);
    const source = await scratch('/dev/shm');
    const { kernel } = await files(source);
    const jail = await scratch();
    expect((await stat(jail)).dev).not.toBe((await stat(source)).dev);
    const plan = aPlan({ chrootBase: jail, files: { [kernel]: 'kernel' } });
    await prepareChroot(plan);
    const copied = path.join(plan.chrootDir, 'kernel');
    expect(await readFile(copied, 'utf8')).toBe('vmlinux');
    expect((await stat(copied)).mode & 0o777).toBe(0o444);
    const first = await stat(copied);
    await prepareChroot(plan);
    expect((await stat(copied)).ino).toBe(first.ino);
  });

  it('names a missing file and what to do', async () => {
    const dir = await scratch();
    const plan = aPlan({ chrootBase: path.join(dir, 'jail'), files: { [path.join(dir, 'missing.ext4')]: 'drives/secrets.ext4' } });
    await expect(prepareChroot(plan)).rejects.toThrow(/missing\.ext4 does not exist; it is to be linked into the jail as \/drives\/secrets\.ext4/);
  });
});
