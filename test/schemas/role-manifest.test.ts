import { describe, expect, it } from 'vitest';
import { fromZodError } from '../../src/common/issues.ts';
import { ProfileManifest } from '../../src/schemas/profile-manifest.ts';
import { RoleManifest } from '../../src/schemas/role-manifest.ts';
import { builtinCatalog } from '../helpers/fixtures.ts';

async function gateway(): Promise<any> {
  return structuredClone((await builtinCatalog()).roles.get('gateway')!.manifest);
}

function problems(schema: typeof RoleManifest | typeof ProfileManifest, value: unknown): [string, string][] {
  const result = schema.safeParse(value);
  return result.success ? [] : fromZodError(result.error).map((i) => [i.path, i.message]);
}

describe('role manifest rules', () => {
  it.each<[string, (m: any) => void, string, RegExp]>([
    ['a service naming an undeclared port', (m) => (m.services[0].ports = ['admin']), 'services[0].ports[0]', /port "admin", which is not in ports/],
    ['a readiness check on an undeclared port', (m) => (m.services[0].readiness.port = 'admin'), 'services[0].readiness.port', /not in ports/],
    ['a default profile that is not allowed', (m) => (m.profiles.default = 'python'), 'profiles.default', /not in profiles.allowed/],
    ['ingress allowed without a target port', (m) => (m.ingress.target_port = null), 'ingress.target_port', /must name the port/],
    ['ingress on by default where not allowed', (m) => Object.assign(m.ingress, { allowed: false, default_enabled: true }), 'ingress.default_enabled', /cannot be enabled/],
    ['two drives on one device', (m) => (m.drives[1].device = 'vdb'), 'drives[1].device', /duplicate device "vdb"/],
    ['a drive declared on vda', (m) => (m.drives[0].device = 'vda'), 'drives[0].device', /vda is the immutable rootfs/],
    ['an ext4 label over 16 characters', (m) => (m.drives[0].label = 'mvm-data-volume-01'), 'drives[0].label', /1-16 characters/],
    ['a relative mount point', (m) => (m.drives[0].mount = 'data'), 'drives[0].mount', /absolute/],
    ['a port above 65535', (m) => (m.ports[0].port = 70000), 'ports[0].port', /65535/],
    ['an unknown vsock handler', (m) => m.vsock.handlers.push('shell'), 'vsock.handlers[9]', /Invalid option/],
    ['a dependency on itself', (m) => (m.depends_on = [{ role: 'gateway', condition: 'ready', scope: 'tenant' }]), 'depends_on', /cannot depend on itself/],
    ['a disposable role that sleeps', (m) => (m.lifecycle.disposable = true), 'sleep.allowed', /disposable role runs to completion/],
    ['a disposable role with persistent drives', (m) => Object.assign(m, { lifecycle: { ...m.lifecycle, disposable: true }, sleep: { ...m.sleep, allowed: false, warm_allowed: false, floor: 0 } }), 'drives[0].persistence', /no persistent tenant state/],
    ['a connector needing secrets without a secrets drive', (m) => (m.drives = m.drives.filter((d: any) => d.name !== 'secrets')), 'connectors[0].secrets', /no ephemeral secrets drive/],
    ['a floor on a role that never sleeps', (m) => Object.assign(m.sleep, { allowed: false, warm_allowed: false }), 'sleep.floor', /only applies to roles that may sleep/],
    ['an unknown field', (m) => (m.replicas = 2), '', /Unrecognized key/],
  ])('rejects %s', async (_what, edit, path, message) => {
    const manifest = await gateway();
    edit(manifest);
    const found = problems(RoleManifest, manifest);
    expect(found).toContainEqual([path, expect.stringMatching(message)]);
  });

  it('accepts the built-in gateway as exported', async () => {
    expect(problems(RoleManifest, await gateway())).toEqual([]);
  });
});

describe('profile manifest rules', () => {
  it('rejects defaults below minimums', async () => {
    const profile = structuredClone((await builtinCatalog()).profiles.get('python')!.manifest) as any;
    profile.resources.defaults.mem_mib = 256;
    expect(problems(ProfileManifest, profile)).toEqual([['resources.defaults.mem_mib', 'default mem_mib (256) is below the minimum (512)']]);
  });
});
