import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { CLI } from '../helpers/fixtures.ts';
import { fixtureBundle, scratchDir, unlock, writeJson } from './bundle-fixture.ts';

/** The real executable in a child process, as an operator runs it. */
function cli(...args: string[]) {
  return execa('node', [CLI, ...args], { reject: false, stdin: 'ignore' });
}

describe('mvm-actors bundle', () => {
  it('imports, lists and verifies a bundle; --json prints the record; progress goes to stderr', async () => {
    const bundle = await fixtureBundle({ rootfsMib: 16 });
    const store = path.join(await scratchDir('mvm-artifacts-'), 'artifacts');

    const imported = await cli('bundle', 'import', bundle.dir, '--name', 'gateway-2026-11-26', '--artifacts-dir', store, '--json');
    expect(imported.stderr).toContain(`importing ${bundle.dir} into ${store}`);
    expect(imported.stderr).toMatch(/rootfs\.ext4 {2}50% {2}\(\d+\.\d MiB of 16\.0 MiB\)/);
    expect(imported.stderr).toMatch(/rootfs\.ext4 {2}100% {2}\(16\.0 MiB of 16\.0 MiB\)/);
    expect(imported.stderr).toMatch(/manifest\.json {2}\d+\.\d KiB/);
    expect(imported.exitCode).toBe(0);
    const record = JSON.parse(imported.stdout);
    expect(record).toMatchObject({ names: ['gateway-2026-11-26'], role: 'gateway', rootfs: path.join(record.dir, 'rootfs.ext4') });
    expect(record.dir.startsWith(store)).toBe(true);
    expect(record.baseConfig).toEqual(bundle.config);

    const human = await cli('bundle', 'import', bundle.dir, '--artifacts-dir', store);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toContain(`imported ${record.hash}  role gateway  names gateway-2026-11-26`);

    const list = await cli('bundle', 'list', '--artifacts-dir', store, '--json');
    expect(list.exitCode).toBe(0);
    expect(JSON.parse(list.stdout).bundles.map((b: any) => b.hash)).toEqual([record.hash]);

    const verify = await cli('bundle', 'verify', 'gateway-2026-11-26', '--artifacts-dir', store);
    expect(verify.exitCode).toBe(0);
    expect(verify.stdout).toContain(`ok ${record.hash}`);

    // Tamper with the stored root image: verify exits 1 and names the file.
    await unlock(record.rootfs);
    const bytes = await readFile(record.rootfs);
    bytes[2048] = bytes[2048]! ^ 1;
    await writeFile(record.rootfs, bytes);
    const tampered = await cli('bundle', 'verify', record.hash, '--artifacts-dir', store, '--json');
    expect(tampered.exitCode).toBe(1);
    expect(tampered.stderr).toContain('rootfs.ext4 does not match its import');
    expect(JSON.parse(tampered.stdout).error).toMatchObject({ code: 'bundle-corrupt', file: 'rootfs.ext4' });
  });

  it('uses <data-dir>/artifacts by default', async () => {
    const bundle = await fixtureBundle();
    const dataDir = await scratchDir('mvm-data-');
    const imported = await cli('bundle', 'import', bundle.dir, '--data-dir', dataDir, '--json');
    expect(imported.exitCode).toBe(0);
    expect(JSON.parse(imported.stdout).dir.startsWith(path.join(dataDir, 'artifacts', 'bundles'))).toBe(true);
  });

  it('refuses a config pointing into /nix/store with exit 1 and the field', async () => {
    const bundle = await fixtureBundle();
    bundle.config['boot-source'].kernel_image_path = '/nix/store/abc-linux/vmlinux';
    await writeJson(bundle.realDir, 'firecracker-config.json', bundle.config);
    const store = path.join(await scratchDir('mvm-artifacts-'), 'artifacts');
    const result = await cli('bundle', 'import', bundle.dir, '--artifacts-dir', store);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('firecracker-config.json at boot-source.kernel_image_path: names /nix/store/abc-linux/vmlinux, inside /nix/store');
  });

  it('explains usage mistakes with exit 2 and unknown bundles with exit 1', async () => {
    const store = path.join(await scratchDir('mvm-artifacts-'), 'artifacts');
    const noDir = await cli('bundle', 'import', '--artifacts-dir', store);
    expect(noDir.exitCode).toBe(2);
    expect(noDir.stderr).toContain('bundle import: give the bundle directory');
    const unknownSub = await cli('bundle', 'remove', 'x', '--artifacts-dir', store);
    expect(unknownSub.exitCode).toBe(2);
    const unknown = await cli('bundle', 'verify', 'gateway-9', '--artifacts-dir', store);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toContain('no bundle named gateway-9');
  });
});
