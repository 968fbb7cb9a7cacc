import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BUILTIN_MANIFEST_DIR, CatalogError, loadCatalog, loadCatalogStrict } from '../../src/catalog/load-catalog.ts';
import { canonicalJson, manifestHash } from '../../src/catalog/manifest-hash.ts';
import { NixStorePathError, refuseNixStorePath } from '../../src/catalog/nix-store-guard.ts';
import { tempDir } from '../helpers/fixtures.ts';

/** A manifest directory populated with copies of the built-in manifests, to break in a test. */
async function copyOfBuiltins(): Promise<string> {
  const dir = await tempDir();
  for (const kind of ['roles', 'profiles']) {
    await mkdir(path.join(dir, kind));
    const { catalog } = await loadCatalog();
    const entries = kind === 'roles' ? catalog.roles : catalog.profiles;
    for (const [name, loaded] of entries) await writeFile(path.join(dir, kind, `${name}.json`), JSON.stringify(loaded.manifest));
  }
  return dir;
}

async function editRole(dir: string, role: string, edit: (m: Record<string, any>) => void) {
  const file = path.join(dir, 'roles', `${role}.json`);
  const manifest = JSON.parse(await readFile(file, 'utf8'));
  edit(manifest);
  await writeFile(file, JSON.stringify(manifest));
}

describe('loading the role catalog', () => {
  it('loads the four built-in roles and five profiles with no problems', async () => {
    const { catalog, problems } = await loadCatalog();
    expect(problems).toEqual([]);
    expect(catalog.dir).toBe(BUILTIN_MANIFEST_DIR);
    expect([...catalog.roles.keys()].sort()).toEqual(['builder', 'capability-imessage', 'gateway', 'worker']);
    expect([...catalog.profiles.keys()].sort()).toEqual(['custom', 'minimal', 'openclaw-gateway', 'openclaw-worker', 'python']);
    for (const role of catalog.roles.values()) expect(role.hash).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('encodes the design in the built-in roles', async () => {
    const { catalog } = await loadCatalog();
    const gateway = catalog.roles.get('gateway')!.manifest;
    expect(gateway.drives.filter((d) => d.required).map((d) => `${d.device}:${d.mount}`)).toEqual(['vdb:/data', 'vdc:/run/secrets', 'vdd:/etc/mvm-config']);
    expect(gateway.sleep.floor).toBeGreaterThanOrEqual(1);
    expect(gateway.ingress).toMatchObject({ allowed: true, target_port: 'gateway-ws' });
    expect(gateway.connectors.map((c) => c.name).sort()).toEqual(['telegram', 'whatsapp']);
    const worker = catalog.roles.get('worker')!.manifest;
    expect(worker.ports).toEqual([]);
    expect(worker.ingress.allowed).toBe(false);
    expect(worker.depends_on).toEqual([{ role: 'gateway', condition: 'ready', scope: 'tenant' }]);
    const builder = catalog.roles.get('builder')!.manifest;
    expect(builder.lifecycle.disposable).toBe(true);
    expect(builder.drives.some((d) => d.persistence === 'persistent')).toBe(false);
    expect(builder.vsock.handlers).not.toContain('drain');
  });

  it('leaves out a manifest that fails its schema, names the file and field, and loads the rest', async () => {
    const dir = await copyOfBuiltins();
    await editRole(dir, 'builder', (m) => {
      m.ports = [{ name: 'x', port: 70000, protocol: 'tcp', exposure: 'tenant' }];
    });
    const { catalog, problems } = await loadCatalog(dir);
    expect(problems).toEqual([{ file: path.join(dir, 'roles/builder.json'), path: 'ports[0].port', message: expect.stringMatching(/65535/) }]);
    expect([...catalog.roles.keys()].sort()).toEqual(['capability-imessage', 'gateway', 'worker']);
  });

  it('reports a manifest that is not JSON', async () => {
    const dir = await copyOfBuiltins();
    await writeFile(path.join(dir, 'roles', 'broken.json'), '{ nope');
    const { problems } = await loadCatalog(dir);
    expect(problems).toEqual([expect.objectContaining({ file: path.join(dir, 'roles/broken.json'), message: expect.stringMatching(/not valid JSON/) })]);
  });

  it('requires the file name and the role name to match', async () => {
    const dir = await copyOfBuiltins();
    await editRole(dir, 'worker', (m) => {
      m.name = 'helper';
    });
    const { problems } = await loadCatalog(dir);
    expect(problems.map((p) => p.path)).toContain('name');
  });

  it('reports dependencies on roles and profiles that are not loaded, and dependency cycles', async () => {
    const dir = await copyOfBuiltins();
    await editRole(dir, 'builder', (m) => {
      m.profiles.allowed.push('ruby');
      m.depends_on = [{ role: 'compiler', condition: 'ready', scope: 'tenant' }];
    });
    await editRole(dir, 'gateway', (m) => {
      m.depends_on = [{ role: 'worker', condition: 'ready', scope: 'tenant' }];
    });
    const { problems } = await loadCatalog(dir);
    const messages = problems.map((p) => p.message);
    expect(messages).toContain('role "builder" allows profile "ruby", which is not loaded');
    expect(messages).toContain('role "builder" depends on role "compiler", which is not loaded');
    expect(messages.some((m) => /startup dependency cycle: (gateway -> worker -> gateway|worker -> gateway -> worker)/.test(m))).toBe(true);
    await expect(loadCatalogStrict(dir)).rejects.toBeInstanceOf(CatalogError);
  });

  it('reports a directory without roles/ or profiles/', async () => {
    const dir = await tempDir();
    const { problems } = await loadCatalog(dir);
    expect(problems.map((p) => p.message)).toEqual(['directory does not exist', 'directory does not exist']);
  });
});

describe('the runtime never reads the Nix store', () => {
  it.each(['/nix/store', '/nix/store/abc-gateway-manifests', '/tmp/../nix/store/abc'])('refuses manifest directory %s', async (dir) => {
    await expect(loadCatalog(dir)).rejects.toBeInstanceOf(NixStorePathError);
    await expect(loadCatalog(dir)).rejects.toThrow(/never reads the Nix store/);
  });

  it('refuses a symlink that resolves into /nix/store', async () => {
    // /nix/store exists wherever nix-bin is installed (the test command requires it).
    const dir = await tempDir();
    const link = path.join(dir, 'manifests');
    await symlink('/nix/store', link);
    await expect(refuseNixStorePath('manifest directory', link)).rejects.toThrow(/-> \/nix\/store/);
  });

  it('accepts paths that only look similar', async () => {
    await expect(refuseNixStorePath('manifest directory', '/nix/storefront')).resolves.toBeUndefined();
  });
});

describe('manifest hashes', () => {
  it('do not depend on key order', () => {
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }] })).toBe('{"a":[{"c":3,"d":2}],"b":1}');
    expect(manifestHash({ b: 1, a: 2 })).toBe(manifestHash({ a: 2, b: 1 }));
  });

  it('change when any field changes', () => {
    expect(manifestHash({ a: 1 })).not.toBe(manifestHash({ a: 2 }));
  });
});

describe('roles the statechart composer cannot honour', () => {
  it('are refused at load time, naming the role and field, and left out', async () => {
    const dir = await copyOfBuiltins();
    await editRole(dir, 'capability-imessage', (m) => {
      m.vsock.handlers = ['ping', 'readiness', 'service-status'];
    });
    const { catalog, problems } = await loadCatalog(dir);
    expect(problems).toEqual([
      {
        file: path.join(dir, 'roles/capability-imessage.json'),
        path: 'vsock.handlers',
        message: 'role "capability-imessage", vsock.handlers: a role that may sleep needs the "post-restore" handler (secrets and entropy are refreshed after every wake)',
      },
    ]);
    expect(catalog.roles.has('capability-imessage')).toBe(false);
  });
});
