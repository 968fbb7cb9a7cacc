import { mkdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { openHostSession } from '../../src/vsock/host-client.ts';
import { REPO_ROOT, tempDir } from '../helpers/fixtures.ts';

/**
 * The simulator runs the same guest agent a real guest runs. This checks that the NixOS guest
 * module (nix/modules/guest.nix) starts it the way the built agent (src/guest/main.ts) reads its
 * flags: the module is evaluated offline (nix-instantiate, with a few lib functions stubbed since
 * nixpkgs is not available here) for the gateway role, and the agent is started with exactly the
 * unit's arguments, paths moved under a temp dir. The vsock bridge must connect to the socket the
 * agent listens on, on the role's agent port.
 */

const STUB_LIB = `{
  concatMapStringsSep = sep: f: xs: builtins.concatStringsSep sep (map f xs);
  filter = builtins.filter;
  hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
  listToAttrs = builtins.listToAttrs;
  mkDefault = x: x;
  mkForce = x: x;
  mkMerge = builtins.foldl' (a: b: a // b) { };
  nameValuePair = name: value: { inherit name value; };
  optional = c: x: if c then [ x ] else [ ];
  optionalAttrs = c: a: if c then a else { };
  splitString = sep: s: builtins.filter builtins.isString (builtins.split sep s);
  hasAttrByPath = p: s: false;
  attrByPath = p: d: s: d;
}`;

async function evaluateUnits(): Promise<Record<string, { serviceConfig: Record<string, string | number> }>> {
  const expr = `
    let
      role = builtins.fromJSON (builtins.readFile ${path.join(REPO_ROOT, 'nix/manifests/roles/gateway.json')});
      guest = import ${path.join(REPO_ROOT, 'nix/modules/guest.nix')} {
        config.mvm = { inherit role; profile = { name = "stub"; packages = [ ]; }; };
        lib = ${STUB_LIB};
        pkgs = { socat = "/stub/socat"; runtimeShell = "/stub/sh"; };
        utils.escapeSystemdExecArgs = builtins.concatStringsSep " ";
      };
    in { inherit (guest.systemd.services) mvm-guest-agent mvm-vsock-bridge openclaw-gateway; }`;
  const { stdout } = await execa('nix-instantiate', ['--eval', '--strict', '--json', '-E', expr]);
  return JSON.parse(stdout);
}

let agent: ReturnType<typeof execa> | undefined;
let dir: string | undefined;
afterEach(async () => {
  agent?.kill('SIGKILL');
  await agent?.catch(() => undefined);
  agent = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('the guest NixOS module and the guest agent agree', () => {
  it("the agent unit's command line starts the built agent, and the vsock bridge points at its socket", async () => {
    const units = await evaluateUnits();
    const args = String(units['mvm-guest-agent']!.serviceConfig.ExecStart).split(' ');
    expect(args[0]).toBe('/run/current-system/sw/bin/mvm-guest-agent');
    const flag = (name: string) => args[args.indexOf(name) + 1];
    expect(args.slice(1)).toEqual(['--listen', '/run/mvm/agent.sock', '--config-dir', '/etc/mvm-config', '--secrets-dir', '/run/secrets', '--pid-dir', '/run/mvm/pids']);
    // The bridge: the gateway role's agent port (1024) to the agent's socket.
    expect(units['mvm-vsock-bridge']!.serviceConfig.ExecStart).toBe(`/stub/socat/bin/socat VSOCK-LISTEN:1024,fork,reuseaddr UNIX-CONNECT:${flag('--listen')}`);
    // Role services record their pid where the agent's probe looks.
    expect(units['openclaw-gateway']!.serviceConfig.ExecStartPost).toBe(`/stub/sh -c 'echo $$MAINPID > ${flag('--pid-dir')}/openclaw-gateway.pid'`);

    // Start the agent with the unit's flags, paths moved into a temp dir.
    dir = await tempDir('mvm-guestunit-');
    const moved = (p: string) => path.join(dir!, p);
    await mkdir(moved('/etc/mvm-config'), { recursive: true });
    await mkdir(moved('/run/mvm/pids'), { recursive: true });
    await mkdir(moved('/run/secrets'), { recursive: true });
    const mvm = { schema_version: 1, instance_id: 'acme-gw-0', tenant_id: 'acme', role: 'gateway', config_version: 3, services: [], ports: [], vsock: { agent_port: 1024, handlers: ['ping'] } };
    await writeFile(moved('/etc/mvm-config/mvm.json'), JSON.stringify(mvm));
    const agentArgs = args.slice(1).map((a) => (a.startsWith('/') ? moved(a) : a));
    agent = execa('node', ['--import', 'tsx', path.join(REPO_ROOT, 'src/guest/main.ts'), ...agentArgs], { cwd: REPO_ROOT, reject: false, buffer: false });
    let output = '';
    agent.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    agent.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    for (let i = 0; i < 200 && !output.includes('listening on'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(output).toContain(`mvm-guest-agent listening on unix:${moved('/run/mvm/agent.sock')}`);

    // What the bridge does: connect to that socket and talk the protocol.
    const socket = net.createConnection({ path: moved('/run/mvm/agent.sock') });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const client = await openHostSession(socket, { instanceId: 'acme-gw-0', tenantId: 'acme' });
    try {
      expect(client.hello).toMatchObject({ instance_id: 'acme-gw-0', role: 'gateway', config_version: 3 });
      expect(await client.request('ping', {})).toMatchObject({ pong: true, instance_id: 'acme-gw-0' });
    } finally {
      client.close();
    }
  });
});
