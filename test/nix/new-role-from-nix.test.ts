import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { evaluateManifests, writeManifests } from '../tools/export-manifests.ts';
import { aDesiredState, CLI, REPO_ROOT, tempDir } from '../helpers/fixtures.ts';
import { writeFile } from 'node:fs/promises';
import { composeInstanceChart, fullOptions } from '../../machines/compose-instance-chart.ts';
import { loadCatalogStrict } from '../../src/catalog/load-catalog.ts';
import { aTestHost } from '../host/helpers.ts';

/**
 * The declarative promise: a VM type is added by writing a Nix file. test/fixtures/nix-roles/
 * sandbox.nix is exported with the built-in roles and the unchanged CLI lists and accepts it.
 */
/** A pool of the fixture role: one running, one asleep. */
function sandboxPool() {
  return {
    pool_id: 'sandboxes',
    role: 'sandbox',
    profile: 'python',
    revision: { artifacts: 'sandbox-1', config_version: 1, secrets_epoch: 0 },
    resources: { vcpus: 1, mem_mib: 512, data_disk_mib: 512 },
    desired_counts: { running: 1, warm: 0, sleeping: 1 },
  };
}

describe('a role defined only in Nix', () => {
  async function exportWithFixture(): Promise<string> {
    const out = await tempDir();
    const exported = await evaluateManifests(
      [path.join(REPO_ROOT, 'nix/roles'), path.join(REPO_ROOT, 'test/fixtures/nix-roles')],
      [path.join(REPO_ROOT, 'nix/profiles')],
    );
    await writeManifests(exported, out);
    return out;
  }

  it('is exported, loaded and listed by `mvm-actors roles` with no TypeScript change', async () => {
    const dir = await exportWithFixture();
    const { stdout, exitCode } = await execa('node', [CLI, 'roles', '--roles', dir, '--json']);
    expect(exitCode).toBe(0);
    const listed = JSON.parse(stdout);
    expect(listed.problems).toEqual([]);
    expect(listed.roles.map((r: { name: string }) => r.name)).toEqual(['builder', 'capability-imessage', 'gateway', 'sandbox', 'worker']);
    const sandbox = listed.roles.find((r: { name: string }) => r.name === 'sandbox');
    // Fields the file leaves out come from nix/lib/defaults.nix, exactly as for built-in roles.
    expect(sandbox).toMatchObject({
      ports: [{ name: 'runner-http', port: 8080, protocol: 'tcp', exposure: 'local' }],
      depends_on: [{ role: 'gateway', condition: 'ready', scope: 'tenant' }],
      sleep: { allowed: true, warm_allowed: false, min_runtime_s: 120, floor: 0 },
      vsock: { agent_port: 1024, handlers: ['ping', 'readiness', 'service-status', 'post-restore'] },
      manifest_hash: expect.stringMatching(/^sha256:/),
    });
    const text = await execa('node', [CLI, 'roles', '--roles', dir]);
    expect(text.stdout).toMatch(/^sandbox {2}sha256:/m);
  });

  it('can be used in a desired state validated by the unchanged CLI', async () => {
    const dir = await exportWithFixture();
    const doc = aDesiredState();
    doc.tenants[0].pools.push(sandboxPool());
    const file = path.join(dir, 'desired.json');
    await writeFile(file, JSON.stringify(doc));
    const withFixture = await execa('node', [CLI, 'validate', file, '--roles', dir], { reject: false });
    expect(withFixture.exitCode, withFixture.stdout).toBe(0);
    const withoutFixture = await execa('node', [CLI, 'validate', file], { reject: false });
    expect(withoutFixture.exitCode).toBe(1);
    expect(withoutFixture.stdout).toContain('tenants[0].pools[3].role: unknown role "sandbox"');
  });

  it('gets a generated chart and a working lifecycle from the unchanged runtime', async () => {
    const dir = await exportWithFixture();
    const catalog = await loadCatalogStrict(dir);
    const sandbox = catalog.roles.get('sandbox')!.manifest;
    const chart = composeInstanceChart(sandbox, fullOptions(sandbox));
    expect(Object.keys(chart.states)).toEqual(expect.arrayContaining(['waiting', 'launching', 'running', 'snapshotting', 'sleeping', 'waking']));
    expect(Object.keys(chart.states)).not.toContain('draining'); // no drain handler declared

    const t = await aTestHost({ roles: dir });
    try {
      const doc = aDesiredState();
      doc.tenants[0].pools.push({
        pool_id: 'sandboxes',
        role: 'sandbox',
        profile: 'python',
        revision: { artifacts: 'sandbox-1', config_version: 1, secrets_epoch: 0 },
        resources: { vcpus: 1, mem_mib: 512, data_disk_mib: 512 },
        desired_counts: { running: 1, warm: 0, sleeping: 1 },
      });
      expect((await t.host.apply(doc)).applied).toBe(true);
      await t.settle();
      expect(t.host.instances({ role: 'sandbox' }).map((i) => [i.instance_id, i.status])).toEqual([
        ['acme-sandboxes-0', 'running'],
        ['acme-sandboxes-1', 'running'],
      ]);
      await t.advance(120_000);
      expect(t.host.instance('acme-sandboxes-1')!.status).toBe('sleeping');
      expect(t.host.wake('acme-sandboxes-1').accepted).toBe(true);
      await t.settle();
      expect(t.host.instance('acme-sandboxes-1')!.status).toBe('running');
      expect(t.driver.vm('acme-sandboxes-1').restoreCount).toBe(1);
    } finally {
      await t.host.close();
    }
  });
});
