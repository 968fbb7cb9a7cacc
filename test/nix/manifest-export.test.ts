import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { loadCatalog } from '../../src/catalog/load-catalog.ts';
import { evaluateManifests, manifestFileText } from '../tools/export-manifests.ts';
import { REPO_ROOT } from '../helpers/fixtures.ts';

const NIX_DIR = path.join(REPO_ROOT, 'nix');

async function nixFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith('.nix')).map((e) => path.join(e.parentPath, e.name));
}

describe('Nix sources', () => {
  it('every .nix file in the repository parses', async () => {
    const files = [...(await nixFiles(NIX_DIR)), path.join(REPO_ROOT, 'flake.nix'), ...(await nixFiles(path.join(REPO_ROOT, 'test/fixtures')))];
    expect(files.length).toBeGreaterThan(12);
    const failures: string[] = [];
    for (const file of files) {
      const result = await execa('nix-instantiate', ['--parse', file], { reject: false });
      if (result.exitCode !== 0) failures.push(`${path.relative(REPO_ROOT, file)}: ${result.stderr}`);
    }
    expect(failures).toEqual([]);
  });

  it('nix/lib/manifests.nix evaluates offline with builtins alone', async () => {
    const { stdout } = await execa('nix-instantiate', ['--eval', '--strict', '--json', path.join(NIX_DIR, 'lib/manifests.nix')]);
    const exported = JSON.parse(stdout);
    expect(Object.keys(exported.roles).sort()).toEqual(['builder', 'capability-imessage', 'gateway', 'worker']);
    expect(Object.keys(exported.profiles).sort()).toEqual(['custom', 'minimal', 'openclaw-gateway', 'openclaw-worker', 'python']);
  });
});

describe('committed manifests', () => {
  it('are exactly what the Nix export produces (run `npm run manifests` after editing nix/)', async () => {
    const exported = await evaluateManifests([path.join(NIX_DIR, 'roles')], [path.join(NIX_DIR, 'profiles')]);
    for (const [kind, entries] of [['roles', exported.roles], ['profiles', exported.profiles]] as const) {
      const dir = path.join(NIX_DIR, 'manifests', kind);
      const committed = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
      expect(committed, `files in nix/manifests/${kind}`).toEqual(Object.keys(entries).map((n) => `${n}.json`).sort());
      for (const [name, manifest] of Object.entries(entries)) {
        expect(await readFile(path.join(dir, `${name}.json`), 'utf8'), `nix/manifests/${kind}/${name}.json`).toBe(manifestFileText(manifest));
      }
    }
  });

  it('all pass the zod schemas and the cross-manifest checks', async () => {
    const { problems } = await loadCatalog(path.join(NIX_DIR, 'manifests'));
    expect(problems).toEqual([]);
  });
});

describe('the export reports mistakes in role files', () => {
  it('names the file when a role name does not match its file name', async () => {
    const dir = path.join(REPO_ROOT, 'test/fixtures/nix-roles-misnamed');
    const result = await execa(
      'nix-instantiate',
      ['--eval', '--strict', '--json', path.join(NIX_DIR, 'lib/export-manifests.nix'), '--arg', 'roleDirs', `[ ${dir} ]`],
      { reject: false },
    );
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toMatch(/mvm\.role\.name is "mailer" but the file is courier\.nix/);
  });
});
