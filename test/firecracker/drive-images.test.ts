import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { buildFilesImage, DriveImageError, ensureDataImage, imageSizeMib } from '../../src/firecracker/drive-images.ts';

const dirs: string[] = [];
async function scratch(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'mvm-drive-test-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

/** Reads an image back with e2fsprogs, without mounting it. debugfs `stat` prints the permission bits only. */
async function debugfs(image: string, request: string): Promise<string> {
  return (await execa('debugfs', ['-R', request, image])).stdout;
}
async function catFile(image: string, file: string): Promise<string> {
  return debugfs(image, `cat /${file}`);
}
async function modeOf(image: string, file: string): Promise<number> {
  const match = /Mode:\s+(\d+)/.exec(await debugfs(image, `stat /${file}`));
  if (!match) throw new Error(`no mode for ${file} in ${image}`);
  return parseInt(match[1]!, 8);
}
async function label(image: string): Promise<string> {
  return (await execa('e2label', [image])).stdout.trim();
}
async function superblock(image: string): Promise<string> {
  return (await execa('dumpe2fs', ['-h', image])).stdout;
}
async function listRoot(image: string): Promise<string[]> {
  return (await debugfs(image, 'ls -p /'))
    .split('\n')
    .map((line) => line.split('/')[5])
    .filter((name): name is string => name !== undefined && name !== '' && name !== '.' && name !== '..' && name !== 'lost+found');
}

describe('buildFilesImage', () => {
  it('builds a labelled ext4 image holding exactly the files, readable without mounting', async () => {
    const dir = await scratch();
    const image = path.join(dir, 'config.ext4');
    const files = { 'pool.json': JSON.stringify({ config_version: 3 }), 'connectors/telegram.json': '{"enabled":true}\n', 'empty.txt': '' };
    await buildFilesImage({ path: image, label: 'mvm-config', files });

    expect(await label(image)).toBe('mvm-config');
    expect(await catFile(image, 'pool.json')).toBe(files['pool.json']);
    expect(await catFile(image, 'connectors/telegram.json')).toBe('{"enabled":true}');
    expect(await catFile(image, 'empty.txt')).toBe('');
    expect((await listRoot(image)).sort()).toEqual(['connectors', 'empty.txt', 'pool.json']);
    expect(await modeOf(image, 'pool.json')).toBe(0o644);
    expect(await modeOf(image, '')).toBe(0o755);
    // Read-only drive: no journal. The image file is private on the host.
    expect(await superblock(image)).not.toMatch(/Filesystem features:.*has_journal/);
    expect((await stat(image)).mode & 0o777).toBe(0o600);
    // Nothing left beside it: no staging directory, no temporary image.
    expect(await readdir(dir)).toEqual(['config.ext4']);
    await execa('e2fsck', ['-fn', image]);
  });

  it('makes a secrets image private: files 0600, root directory 0700', async () => {
    const dir = await scratch();
    const image = path.join(dir, 'secrets.ext4');
    await buildFilesImage({ path: image, label: 'mvm-secrets', files: { 'telegram-bot-token': 's3cret', 'nested/key': 'k' }, fileMode: 0o600 });
    expect(await label(image)).toBe('mvm-secrets');
    expect(await catFile(image, 'telegram-bot-token')).toBe('s3cret');
    expect(await modeOf(image, 'telegram-bot-token')).toBe(0o600);
    expect(await modeOf(image, 'nested/key')).toBe(0o600);
    expect(await modeOf(image, 'nested')).toBe(0o700);
    expect(await modeOf(image, '')).toBe(0o700);
    expect(await readdir(dir)).toEqual(['secrets.ext4']);
    await execa('e2fsck', ['-fn', image]);
  });

  it('rebuilds atomically: the new image replaces the old one whole', async () => {
    const dir = await scratch();
    const image = path.join(dir, 'secrets.ext4');
    await buildFilesImage({ path: image, label: 'mvm-secrets', files: { a: 'epoch 1', b: 'gone next time' }, fileMode: 0o600 });
    const before = await stat(image);
    await buildFilesImage({ path: image, label: 'mvm-secrets', files: { a: 'epoch 2' }, fileMode: 0o600 });
    expect((await stat(image)).ino).not.toBe(before.ino);
    expect(await catFile(image, 'a')).toBe('epoch 2');
    expect(await listRoot(image)).toEqual(['a']);
  });

  it('sizes the image from its content, with headroom, unless a size is given', async () => {
    const dir = await scratch();
    const big = 'x'.repeat(3 * 1024 * 1024);
    expect(imageSizeMib({ a: 'small' })).toBe(2);
    const computed = imageSizeMib({ big });
    expect(computed).toBeGreaterThanOrEqual(5);
    const image = path.join(dir, 'big.ext4');
    await buildFilesImage({ path: image, label: 'mvm-config', files: { big } });
    expect((await stat(image)).size).toBe(computed * 1024 * 1024);
    expect((await catFile(image, 'big')).length).toBe(big.length);
    const sized = path.join(dir, 'sized.ext4');
    await buildFilesImage({ path: sized, label: 'mvm-config', files: { a: 'b' }, sizeMib: 16 });
    expect((await stat(sized)).size).toBe(16 * 1024 * 1024);
  });

  it('refuses a bad label, a path that escapes the image, and content that does not fit', async () => {
    const dir = await scratch();
    const image = path.join(dir, 'x.ext4');
    await expect(buildFilesImage({ path: image, label: 'a-label-longer-than-16', files: {} })).rejects.toMatchObject({ field: 'label' });
    await expect(buildFilesImage({ path: image, label: 'mvm-config', files: { '../etc/passwd': 'x' } })).rejects.toMatchObject({ field: 'files', message: expect.stringContaining('"../etc/passwd"') });
    await expect(buildFilesImage({ path: image, label: 'mvm-config', files: { '/abs': 'x' } })).rejects.toBeInstanceOf(DriveImageError);
    await expect(buildFilesImage({ path: image, label: 'mvm-config', files: { big: 'x'.repeat(3 * 1024 * 1024) }, sizeMib: 1 })).rejects.toMatchObject({
      message: expect.stringContaining('mkfs.ext4 failed building the mvm-config image'),
    });
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('ensureDataImage', () => {
  it('creates a sparse, journalled, labelled image once and keeps it afterwards', async () => {
    const dir = await scratch();
    const image = path.join(dir, 'data.ext4');
    expect(await ensureDataImage({ path: image, label: 'mvm-data', sizeMib: 256 })).toBe(true);
    const created = await stat(image);
    expect(created.size).toBe(256 * 1024 * 1024);
    // Sparse: far fewer blocks allocated than the size.
    expect(created.blocks * 512).toBeLessThan(64 * 1024 * 1024);
    expect(await label(image)).toBe('mvm-data');
    expect(await superblock(image)).toMatch(/Filesystem features:.*has_journal/);

    // Guest data written into the image (here with debugfs) survives the next ensure.
    const payload = path.join(dir, 'payload');
    await writeFile(payload, 'guest state');
    await execa('debugfs', ['-w', '-R', `write ${payload} state.txt`, image]);
    expect(await ensureDataImage({ path: image, label: 'mvm-data', sizeMib: 512 })).toBe(false);
    const kept = await stat(image);
    expect(kept.ino).toBe(created.ino);
    expect(kept.size).toBe(256 * 1024 * 1024);
    expect(await catFile(image, 'state.txt')).toBe('guest state');
    expect((await readdir(dir)).sort()).toEqual(['data.ext4', 'payload']);
  });

  it('refuses a size too small for a journal, naming the field', async () => {
    const dir = await scratch();
    await expect(ensureDataImage({ path: path.join(dir, 'd.ext4'), label: 'mvm-data', sizeMib: 2 })).rejects.toMatchObject({ field: 'sizeMib', message: expect.stringContaining('data_disk_mib') });
  });
});
