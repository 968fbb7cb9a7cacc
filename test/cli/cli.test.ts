import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { CLI, EXAMPLE_DESIRED_STATE, REPO_ROOT, aDesiredState, tempDir } from '../helpers/fixtures.ts';

/** Runs the real `mvm-actors` executable in a child process. */
function mvm(...args: string[]) {
  return execa('node', [CLI, ...args], { reject: false, cwd: REPO_ROOT });
}

describe('mvm-actors roles', () => {
  it('--json lists the four roles with drives, ports, ingress, vsock handlers, dependencies and sleep policy', async () => {
    const { stdout, exitCode } = await mvm('roles', '--json');
    expect(exitCode).toBe(0);
    const { roles, problems } = JSON.parse(stdout);
    expect(problems).toEqual([]);
    expect(roles.map((r: { name: string }) => r.name)).toEqual(['builder', 'capability-imessage', 'gateway', 'worker']);
    for (const role of roles) {
      for (const field of ['drives', 'ports', 'ingress', 'vsock', 'depends_on', 'sleep', 'services', 'connectors', 'manifest_hash']) {
        expect(role, `${role.name}.${field}`).toHaveProperty(field);
      }
    }
    const gateway = roles.find((r: { name: string }) => r.name === 'gateway');
    expect(gateway.ports[0]).toEqual({ name: 'gateway-ws', port: 18789, protocol: 'tcp', exposure: 'tenant' });
    expect(gateway.vsock.handlers).toContain('drain');
  });

  it('prints a readable summary per role', async () => {
    const { stdout, exitCode } = await mvm('roles');
    expect(exitCode).toBe(0);
    expect(stdout).toMatch(/^4 roles from /);
    expect(stdout).toMatch(/^worker {2}sha256:[0-9a-f]{12}$/m);
    expect(stdout).toMatch(/^ {2}depends on +gateway ready \(tenant\)$/m);
    expect(stdout).toContain('openclaw-gateway: openclaw gateway run [ready: openclaw /readyz + connect :18789 as operator (operator.read) with secret gateway-token -> hello-ok; stop 20s]');
  });

  it('refuses a manifest directory in /nix/store', async () => {
    const { stderr, exitCode } = await mvm('roles', '--roles', '/nix/store/abc-manifests');
    expect(exitCode).toBe(2);
    expect(stderr).toMatch(/never reads the Nix store/);
  });

  it('exits 1 and names the problem when a manifest is bad', async () => {
    const dir = await tempDir();
    await execa('cp', ['-r', path.join(REPO_ROOT, 'nix/manifests/roles'), path.join(REPO_ROOT, 'nix/manifests/profiles'), dir]);
    await writeFile(path.join(dir, 'roles/worker.json'), '{"schema_version": 1}');
    const { stdout, stderr, exitCode } = await mvm('roles', '--roles', dir);
    expect(exitCode).toBe(1);
    expect(stdout).toMatch(/^3 roles/);
    expect(stderr).toMatch(/roles\/worker\.json at name: role name is required/);
  });
});

describe('mvm-actors validate', () => {
  it('accepts the documented example', async () => {
    const { stdout, exitCode } = await mvm('validate', EXAMPLE_DESIRED_STATE);
    expect(exitCode).toBe(0);
    expect(stdout).toMatch(/is valid: node kvm-host-01, generation 7, 2 tenant\(s\), 5 pool\(s\), 9 instance\(s\)/);
  });

  it('rejects the documented bad example with a message and hint per path, and says what would still apply', async () => {
    const { stdout, exitCode } = await mvm('validate', 'docs/examples/desired-state-invalid.json');
    expect(exitCode).toBe(1);
    expect(stdout).toContain('✖ tenants[0].pools[1].role: unknown role "gatway"');
    expect(stdout).toContain('hint: loaded roles: builder, capability-imessage, gateway, worker');
    expect(stdout).toContain('✖ tenants[0].pools[2].revision.artifacts:');
    expect(stdout).toContain('✖ tenants[1].tenant_net_id: tenant_net_id 101 is already used by tenants[0]');
    expect(stdout).toMatch(/1 tenant\(s\) and 2 pool\(s\) rejected; the rest \(1 tenant\(s\), 1 pool\(s\)\) would still apply/);
  });

  it('--json prints the issues as data', async () => {
    const { stdout, exitCode } = await mvm('validate', 'docs/examples/desired-state-invalid.json', '--json');
    expect(exitCode).toBe(1);
    const report = JSON.parse(stdout);
    expect(report.ok).toBe(false);
    expect(report.issues[0]).toEqual({
      path: 'tenants[0].pools[1].role',
      segments: ['tenants', 0, 'pools', 1, 'role'],
      code: 'unknown_role',
      message: 'unknown role "gatway"',
      hint: expect.stringContaining('loaded roles'),
    });
    expect(report.rejected).toEqual({ tenants: ['tenants[1]'], pools: ['tenants[0].pools[1]', 'tenants[0].pools[2]'] });
  });

  it('reads the document from stdin with -', async () => {
    const doc = aDesiredState();
    doc.generation = 8;
    const result = await execa('node', [CLI, 'validate', '-'], { input: JSON.stringify(doc), reject: false });
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain('generation 8');
  });

  it('says where bad JSON is broken instead of printing a stack trace', async () => {
    const file = path.join(await tempDir(), 'desired.json');
    await writeFile(file, '{\n  "schema_version": 1,\n  "tenants": [1,,2]\n}\n');
    const { stderr, exitCode } = await mvm('validate', file);
    expect(exitCode).toBe(2);
    expect(stderr).toBe(`mvm-actors: ${file} is not valid JSON at line 3, column 17: value expected`);
  });

  it('reports a missing file and a missing argument as usage errors', async () => {
    const missing = await mvm('validate', '/does/not/exist.json');
    expect([missing.exitCode, missing.stderr]).toEqual([2, 'mvm-actors: /does/not/exist.json: no such file']);
    const noArg = await mvm('validate');
    expect(noArg.exitCode).toBe(2);
    expect(noArg.stderr).toMatch(/give the desired-state file/);
  });
});

describe('mvm-actors schema', () => {
  it.each(['desired-state', 'instance', 'role-manifest', 'profile-manifest'])('prints the JSON Schema of %s', async (name) => {
    const { stdout, exitCode } = await mvm('schema', name);
    expect(exitCode).toBe(0);
    const schema = JSON.parse(stdout);
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(Object.keys(schema.$defs)).toHaveLength(1);
  });

  it('describes the id rules in the desired-state schema', async () => {
    const schema = JSON.parse((await mvm('schema', 'desired-state')).stdout);
    const tenant = schema.$defs.DesiredState.properties.tenants.items;
    expect(tenant.properties.tenant_id).toMatchObject({ pattern: '^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$', maxLength: 32 });
    expect(tenant.required).toEqual(['tenant_id', 'tenant_net_id', 'ipv4_subnet', 'pools']);
  });

  it('lists the schemas without an argument and rejects unknown names', async () => {
    expect((await mvm('schema')).stdout).toContain('desired-state, instance, role-manifest, profile-manifest');
    expect(JSON.parse((await mvm('schema', '--json')).stdout).schemas).toHaveLength(4);
    const unknown = await mvm('schema', 'tenant');
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toMatch(/unknown schema "tenant"; choose one of/);
  });
});

describe('mvm-actors usage', () => {
  it('prints help and exits 0 for help, 2 with no command', async () => {
    expect((await mvm('help')).exitCode).toBe(0);
    const none = await mvm();
    expect(none.exitCode).toBe(2);
    expect(none.stdout).toContain('Usage: mvm-actors <command>');
  });

  it('rejects unknown commands and options', async () => {
    const cmd = await mvm('deploy');
    expect([cmd.exitCode, cmd.stderr]).toEqual([2, 'mvm-actors: unknown command "deploy"; run `mvm-actors help`']);
    const opt = await mvm('roles', '--colour');
    expect(opt.exitCode).toBe(2);
    expect(opt.stderr).toMatch(/--colour/);
  });
});

describe('mvm-actors in a pipeline', () => {
  it('exits quietly when the reader has already gone (EPIPE)', async () => {
    // `true` exits at once, long before node has started, so every write hits a closed pipe.
    const result = await execa('bash', ['-c', `node ${CLI} roles --json | true; echo "status=\${PIPESTATUS[0]}"`], { reject: false });
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe('status=0');
  });
});

describe('mvm-actors chart', () => {
  it('prints the generated chart of a role as JSON, identical to its golden file', async () => {
    const { stdout, exitCode } = await mvm('chart', 'worker');
    expect(exitCode).toBe(0);
    const golden = await readFile(path.join(REPO_ROOT, 'machines/golden/worker.json'), 'utf8');
    expect(`${stdout}\n`).toBe(golden);
  });

  it('draws DOT and Mermaid', async () => {
    const dot = await mvm('chart', 'gateway', '--format', 'dot');
    expect(dot.stdout).toMatch(/^digraph "gateway instance" \{/);
    expect(dot.stdout).toContain('"pending" -> "preflight" [label="cmd.start"];');
    const mermaid = await mvm('chart', 'builder', '--format', 'mermaid');
    expect(mermaid.stdout).toMatch(/^stateDiagram-v2\n/);
    expect(mermaid.stdout).toContain('running --> destroying: obs.exited');
    expect(mermaid.stdout).not.toContain('sleeping');
  });

  it('draws the chart a pool would get: fewer connectors, no ingress', async () => {
    const chart = JSON.parse((await mvm('chart', 'gateway', '--connectors', 'whatsapp', '--no-ingress')).stdout);
    expect(Object.keys(chart.states.running.states)).toEqual(['lifecycle', 'connector-whatsapp', 'reload']);
  });

  it('names the problem for an unknown role, format or connector', async () => {
    const role = await mvm('chart', 'pager');
    expect([role.exitCode, role.stderr]).toEqual([2, 'mvm-actors: chart: unknown role "pager"; loaded roles: builder, capability-imessage, gateway, worker']);
    const format = await mvm('chart', 'gateway', '--format', 'png');
    expect(format.stderr).toBe('mvm-actors: chart: unknown format "png"; choose one of: json, dot, mermaid, svg');
    const connector = await mvm('chart', 'gateway', '--connectors', 'signal');
    expect(connector.exitCode).toBe(2);
    expect(connector.stderr).toContain('role "gateway", connectors: the pool enables connector "signal", which the role does not declare');
  });
});
