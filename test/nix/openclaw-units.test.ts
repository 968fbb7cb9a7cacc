import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeHostArgs, gatewayArgs } from '../../src/openclaw/enrolment.ts';
import { serviceOutputPath } from '../../src/openclaw/openclaw-layout.ts';
import { openclawServiceEnv } from '../../src/openclaw/service-env.ts';
import { openclawServiceSpec } from '../../src/openclaw/service-spec.ts';
import { GUEST_TMP } from '../../src/openclaw/drive-files.ts';
import { REPO_ROOT, tempDir } from '../helpers/fixtures.ts';

/**
 * The OpenClaw profiles' systemd units (nix/profiles/openclaw/units.nix) run the services the way
 * the simulator does: evaluated offline (nix-instantiate, a few lib functions and packages
 * stubbed since nixpkgs is not available here) for the built-in gateway and worker roles, their
 * environment equals openclawServiceEnv, their output goes where the readiness probe reads it,
 * and the node host's launcher script, run against a config and secrets drive, execs exactly
 * nodeHostArgs.
 */

const STUB_LIB = `{
  filter = builtins.filter;
  listToAttrs = builtins.listToAttrs;
  mkForce = x: x;
  nameValuePair = name: value: { inherit name value; };
  hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
  escapeShellArgs = xs: builtins.concatStringsSep " " (map (x: "'" + x + "'") xs);
}`;

interface Unit {
  environment: Record<string, string>;
  path: string[];
  serviceConfig: Record<string, string | number | boolean>;
}

async function evaluate(role: string): Promise<{ services: Record<string, Unit>; tmpfiles: string[] }> {
  const expr = `
    let
      role = builtins.fromJSON (builtins.readFile ${path.join(REPO_ROOT, `nix/manifests/roles/${role}.json`)});
      units = import ${path.join(REPO_ROOT, 'nix/profiles/openclaw/units.nix')} {
        config.mvm.role = role;
        lib = ${STUB_LIB};
        pkgs = { jq = "/stub/jq"; coreutils = "/stub/coreutils"; nodejs_24 = "/stub/nodejs_24"; writeShellScript = name: text: text; };
        utils.escapeSystemdExecArgs = builtins.concatStringsSep " ";
      };
    in { services = units.systemd.services; tmpfiles = units.systemd.tmpfiles.rules; }`;
  const { stdout } = await execa('nix-instantiate', ['--eval', '--strict', '--json', '-E', expr]);
  return JSON.parse(stdout);
}

const MOUNTS = { data: '/data', secrets: '/run/secrets', config: '/etc/mvm-config', tmp: GUEST_TMP };

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('the OpenClaw profiles as systemd units', () => {
  it('the gateway unit: the environment of openclawServiceEnv, Node 24 first, output on /data, bounded stop, no restart on exit 78', async () => {
    const { services, tmpfiles } = await evaluate('gateway');
    expect(Object.keys(services)).toEqual(['openclaw-gateway']);
    const unit = services['openclaw-gateway']!;
    const { PATH, ...env } = openclawServiceEnv({ mounts: MOUNTS, configFile: 'openclaw.json', path: '/unused' });
    expect(PATH).toBe('/unused');
    expect(unit.environment).toEqual(env);
    expect(unit.path).toEqual(['/stub/nodejs_24']);
    const output = serviceOutputPath('/data', 'openclaw-gateway');
    expect(unit.serviceConfig).toEqual({
      ExecStartPre: `/stub/coreutils/bin/echo ${openclawServiceSpec.start_marker}`,
      StandardOutput: `append:${output}`,
      StandardError: `append:${output}`,
      PrivateTmp: true,
      TimeoutStopSec: 20,
      KillMode: 'control-group',
      SendSIGKILL: true,
      RestartPreventExitStatus: 78,
    });
    expect(tmpfiles).toEqual([`d ${path.dirname(output)} 0750 root root -`]);
    // Its command line is the manifest's program and args (nix/modules/guest.nix), the simulator's gatewayArgs.
    const manifest = JSON.parse(await readFile(path.join(REPO_ROOT, 'nix/manifests/roles/gateway.json'), 'utf8'));
    expect(manifest.services[0].args).toEqual(gatewayArgs());
  });

  it("the worker unit's launcher execs exactly nodeHostArgs, from the config and secrets drives, with and without a setup code", async () => {
    const { services } = await evaluate('worker');
    const unit = services['openclaw-node']!;
    const { PATH: _path, ...env } = openclawServiceEnv({ mounts: MOUNTS, configFile: 'openclaw.json', path: '/unused' });
    expect(unit.environment).toEqual(env);
    expect(unit.serviceConfig.TimeoutStopSec).toBe(15);
    expect(unit.serviceConfig.StandardError).toBe(`append:${serviceOutputPath('/data', 'openclaw-node')}`);

    // Run the launcher with the guest paths moved under a temp dir and a stand-in openclaw that prints its argv.
    dir = await tempDir('mvm-ocunits-');
    const moved = (p: string) => path.join(dir!, p);
    await mkdir(moved('/etc/mvm-config'), { recursive: true });
    await mkdir(moved('/run/secrets'), { recursive: true });
    await mkdir(moved('/bin'), { recursive: true });
    await writeFile(moved('/bin/openclaw'), '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n');
    await chmod(moved('/bin/openclaw'), 0o755);
    const mvm = {
      instance_id: 'acme-workers-0',
      depends_on: [{ role: 'gateway', instance_id: 'acme-gateway-0', ipv4: '10.0.0.2', ports: { 'gateway-ws': 18789 } }],
      secrets: [{ name: 'gateway-token', generate: 'token' }, { name: 'node-setup-code', generate: 'openclaw-setup-code' }],
    };
    await writeFile(moved('/etc/mvm-config/mvm.json'), JSON.stringify(mvm));
    const script = String(unit.serviceConfig.ExecStart)
      .replaceAll('/stub/jq/bin/jq', 'jq')
      .replaceAll('/etc/mvm-config', moved('/etc/mvm-config'))
      .replaceAll('/run/secrets', moved('/run/secrets'))
      .replaceAll('/run/current-system/sw/bin/openclaw', moved('/bin/openclaw'));
    const run = async () => (await execa('bash', ['-c', script])).stdout.split('\n');

    expect(await run()).toEqual(nodeHostArgs({ gatewayHost: '10.0.0.2', gatewayPort: 18789, displayName: 'acme-workers-0', setupCode: null }));
    await writeFile(moved('/run/secrets/node-setup-code'), 'eyJ1cmwiOiJ3czovLzEwLjAuMC4yOjE4Nzg5In0\n', { mode: 0o600 });
    expect(await run()).toEqual(nodeHostArgs({ gatewayHost: '10.0.0.2', gatewayPort: 18789, displayName: 'acme-workers-0', setupCode: 'eyJ1cmwiOiJ3czovLzEwLjAuMC4yOjE4Nzg5In0' }));
  });
});
