import { appendFile, lstat, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { ArtifactError } from '../../src/bundle/artifact-error.ts';
import { ArtifactStore, type ImportProgress } from '../../src/bundle/artifact-store.ts';
import { builtinCatalog } from '../helpers/fixtures.ts';
import { fixtureBundle, scratchDir, unlock, writeJson } from './bundle-fixture.ts';

async function storeIn(): Promise<ArtifactStore> {
  return new ArtifactStore(path.join(await scratchDir('mvm-artifacts-'), 'artifacts'));
}

async function importError(store: ArtifactStore, dir: string, name?: string): Promise<ArtifactError> {
  const error = await store.import(dir, name === undefined ? {} : { name }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ArtifactError);
  return error as ArtifactError;
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(full)));
    else out.push(full);
  }
  return out;
}

describe('ArtifactStore.import', () => {
  it('copies a Nix-style bundle into the store by content hash, dereferencing symlinks and checking it', async () => {
    const bundle = await fixtureBundle();
    const store = await storeIn();
    const progress: ImportProgress[] = [];
    const artifacts = await store.import(bundle.dir, { name: 'gateway-2026-11-26', onProgress: (p) => progress.push(p) });

    expect(artifacts.hash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(artifacts.names).toEqual(['gateway-2026-11-26']);
    expect(artifacts.dir).toBe(path.join(store.rootDir, 'bundles', `sha256-${artifacts.hash.slice(7)}`));
    expect(artifacts.kernel).toBe(path.join(artifacts.dir, 'kernel'));
    expect(artifacts.initrd).toBe(path.join(artifacts.dir, 'initrd'));
    expect(artifacts.rootfs).toBe(path.join(artifacts.dir, 'rootfs.ext4'));
    expect(artifacts.baseConfig).toEqual(bundle.config);
    // The manifest hash is the one the catalog computes for the same role.
    expect(artifacts.manifestHash).toBe((await builtinCatalog()).roles.get('gateway')!.hash);
    expect((artifacts.manifest as any).name).toBe('gateway');

    // The kernel was a symlink out of the bundle: the store holds its bytes, not a link.
    const kernel = await lstat(artifacts.kernel);
    expect(kernel.isFile()).toBe(true);
    expect(await readFile(artifacts.kernel)).toEqual(await readFile(path.join(bundle.realDir, 'kernel')));
    for (const file of await filesUnder(artifacts.dir)) {
      expect((await lstat(file)).isSymbolicLink()).toBe(false);
      expect((await stat(file)).mode & 0o777).toBe(0o444);
    }
    expect((await stat(artifacts.dir)).mode & 0o777).toBe(0o555);
    // The stored root image is still a filesystem with its label.
    expect((await execa('e2label', [artifacts.rootfs])).stdout.trim()).toBe('mvm-root');

    // Progress: every file reported, ending at its size.
    for (const name of ['firecracker-config.json', 'initrd', 'kernel', 'manifest.json', 'profile.json', 'rootfs.ext4']) {
      const last = progress.filter((p) => p.file === name).at(-1);
      expect(last, name).toBeDefined();
      expect(last!.bytes).toBe(last!.total);
    }
  });

  it('reports progress in chunks for a large file', async () => {
    const bundle = await fixtureBundle({ rootfsMib: 6 });
    const store = await storeIn();
    const progress: ImportProgress[] = [];
    await store.import(bundle.dir, { onProgress: (p) => progress.push(p) });
    const rootfs = progress.filter((p) => p.file === 'rootfs.ext4');
    expect(rootfs.length).toBeGreaterThanOrEqual(6);
    expect(rootfs.map((p) => p.bytes)).toEqual([...rootfs.map((p) => p.bytes)].sort((a, b) => a - b));
    expect(rootfs.at(-1)!.bytes).toBe(6 * 1024 * 1024);
  });

  it('is idempotent: the same content gets the same hash and one copy; a second name joins the first', async () => {
    const bundle = await fixtureBundle();
    const store = await storeIn();
    const first = await store.import(bundle.dir, { name: 'gateway-a' });
    const again = await store.import(bundle.dir, { name: 'gateway-a' });
    const other = await store.import(bundle.realDir, { name: 'gateway-b' });
    expect(again.hash).toBe(first.hash);
    expect(other.hash).toBe(first.hash);
    expect(other.names).toEqual(['gateway-a', 'gateway-b']);
    // One bundle directory, no import left behind.
    expect(await readdir(path.join(store.rootDir, 'bundles'))).toEqual([path.basename(first.dir)]);
    expect(await store.list()).toHaveLength(1);
  });

  it('gives different content a different hash, and refuses to move an id to it', async () => {
    const bundle = await fixtureBundle();
    const store = await storeIn();
    const first = await store.import(bundle.dir, { name: 'gateway-a' });
    await writeFile(path.join(bundle.realDir, 'initrd'), Buffer.alloc(8 * 1024, 4));
    const error = await importError(store, bundle.dir, 'gateway-a');
    expect(error.code).toBe('bundle-name-taken');
    expect(error.message).toContain('gateway-a');
    expect(error.message).toContain('--name gateway-a-2');
    // The id still means the first bundle; the new content is stored under its own hash.
    expect((await store.resolve('gateway-a')).hash).toBe(first.hash);
    const hashes = (await store.list()).map((b) => b.hash);
    expect(hashes).toHaveLength(2);
    expect(hashes).toContain(first.hash);
  });

  it('refuses a config that names a host path in /nix/store, naming the field', async () => {
    const bundle = await fixtureBundle();
    bundle.config.drives[0].path_on_host = '/nix/store/abc123-rootfs/rootfs.ext4';
    await writeJson(bundle.realDir, 'firecracker-config.json', bundle.config);
    const store = await storeIn();
    const error = await importError(store, bundle.dir);
    expect(error.code).toBe('bundle-nix-store');
    expect(error.file).toBe('firecracker-config.json');
    expect(error.field).toBe('drives[0].path_on_host');
    expect(error.message).toContain('/nix/store/abc123-rootfs/rootfs.ext4');
    expect(error.message).toContain('relative to the bundle');
    // Nothing was stored.
    expect(await store.list()).toEqual([]);
  });

  it.each([
    ['a cache type the spec does not list', (c: any) => (c.drives[1].cache_type = 'Fast'), 'drives[1].cache_type', 'must be one of "Unsafe", "Writeback"'],
    ['a field of the wrong type', (c: any) => (c['machine-config'].vcpu_count = 'two'), 'machine-config.vcpu_count', 'must be integer'],
    ['a misspelt field', (c: any) => (c['machine-config'].vcpus = 2), 'machine-config.vcpus', 'is not a field Firecracker knows'],
    ['a missing required field', (c: any) => delete c['boot-source'].kernel_image_path, 'boot-source.kernel_image_path', 'is required'],
    ['too many vCPUs', (c: any) => (c['machine-config'].vcpu_count = 64), 'machine-config.vcpu_count', 'must be <= 32'],
  ])('refuses a config that breaks the Firecracker spec: %s', async (_what, mutate, field, message) => {
    const bundle = await fixtureBundle();
    mutate(bundle.config);
    await writeJson(bundle.realDir, 'firecracker-config.json', bundle.config);
    const error = await importError(await storeIn(), bundle.dir);
    expect(error.code).toBe('bundle-invalid');
    expect(error.field).toBe(field);
    expect(error.message).toContain(`firecracker-config.json at ${field}: ${message}`);
  });

  it.each([
    ['an absolute kernel path', (c: any) => (c['boot-source'].kernel_image_path = '/boot/vmlinux'), 'boot-source.kernel_image_path', 'relative to the bundle'],
    ['a root image that is not in the bundle', (c: any) => (c.drives[0].path_on_host = 'root.img'), 'drives[0].path_on_host', 'not a file in the bundle'],
    ['no slot for a drive the manifest declares', (c: any) => c.drives.pop(), 'drives', 'drive_id "config"'],
  ])('refuses a config that does not fit the bundle: %s', async (_what, mutate, field, message) => {
    const bundle = await fixtureBundle();
    mutate(bundle.config);
    await writeJson(bundle.realDir, 'firecracker-config.json', bundle.config);
    const error = await importError(await storeIn(), bundle.dir);
    expect(error.code).toBe('bundle-invalid');
    expect(error.field).toBe(field);
    expect(error.message).toContain(message);
  });

  it('refuses an invalid role manifest, naming the field', async () => {
    const bundle = await fixtureBundle();
    bundle.manifest.lifecycle.restart = 'sometimes';
    await writeJson(bundle.realDir, 'manifest.json', bundle.manifest);
    const error = await importError(await storeIn(), bundle.dir);
    expect(error.code).toBe('bundle-invalid');
    expect(error.file).toBe('manifest.json');
    expect(error.field).toBe('lifecycle.restart');
    expect(error.message).toContain('manifest.json at lifecycle.restart');
  });

  it('refuses a bad id and a directory that is not a bundle', async () => {
    const bundle = await fixtureBundle();
    const store = await storeIn();
    const badName = await importError(store, bundle.dir, 'Gateway/1');
    expect(badName.field).toBe('name');
    expect(badName.message).toContain('--name "Gateway/1"');
    const empty = await scratchDir();
    const notBundle = await importError(store, empty);
    expect(notBundle.message).toContain('has no manifest.json');
  });
});

describe('ArtifactStore.resolve and verify', () => {
  it('resolves by id and by hash to the same bundle', async () => {
    const bundle = await fixtureBundle();
    const store = await storeIn();
    const imported = await store.import(bundle.dir, { name: 'gateway-1' });
    const byName = await store.resolve('gateway-1');
    const byHash = await store.resolve(imported.hash);
    expect(byName).toEqual(imported);
    expect(byHash).toEqual(imported);
    // A second store object on the same directory (a restarted host) sees the same.
    expect(await new ArtifactStore(store.rootDir).resolve('gateway-1')).toEqual(imported);
  });

  it('names the ref and the fix for an unknown bundle', async () => {
    const store = await storeIn();
    await expect(store.resolve('gateway-9')).rejects.toMatchObject({ code: 'bundle-unknown', message: expect.stringContaining('mvm-actors bundle import <dir> --name gateway-9') });
    await expect(store.resolve(`sha256:${'a'.repeat(64)}`)).rejects.toMatchObject({ code: 'bundle-unknown' });
    await expect(store.resolve('/nix/store/x')).rejects.toMatchObject({ code: 'bundle-unknown', message: expect.stringContaining('neither a bundle id') });
  });

  it('verify passes on an intact bundle and fails naming a file whose bytes changed', async () => {
    const bundle = await fixtureBundle();
    const store = await storeIn();
    const imported = await store.import(bundle.dir, { name: 'gateway-1' });
    expect((await store.verify('gateway-1')).hash).toBe(imported.hash);

    // Same size, different bytes: resolve's cheap size check cannot see it; verify must.
    await unlock(imported.kernel);
    const bytes = await readFile(imported.kernel);
    bytes[100] = bytes[100]! ^ 0xff;
    await writeFile(imported.kernel, bytes);
    await expect(store.resolve('gateway-1')).resolves.toBeDefined();
    const error = await store.verify('gateway-1').then(
      () => undefined,
      (e: unknown) => e as ArtifactError,
    );
    expect(error).toBeInstanceOf(ArtifactError);
    expect(error!.code).toBe('bundle-corrupt');
    expect(error!.file).toBe('kernel');
    expect(error!.message).toContain('gateway-1: kernel does not match its import');
  });

  it('notices a truncated file at resolve and an added file at verify', async () => {
    const bundle = await fixtureBundle();
    const store = await storeIn();
    const imported = await store.import(bundle.dir);
    await unlock(path.join(imported.dir, 'initrd'));
    await writeFile(path.join(imported.dir, 'extra.bin'), 'x');
    await expect(store.verify(imported.hash)).rejects.toMatchObject({ code: 'bundle-corrupt', file: 'extra.bin' });
    await appendFile(imported.initrd!, 'more');
    await expect(store.resolve(imported.hash)).rejects.toMatchObject({ code: 'bundle-corrupt', file: 'initrd', message: expect.stringContaining('import the bundle again') });
  });
});
