import type { LoadedRole } from '../../catalog/catalog.ts';
import { loadCatalog } from '../../catalog/load-catalog.ts';
import type { RoleManifest } from '../../schemas/role-manifest.ts';
import { EXIT, printJson, type Output } from '../output.ts';

export interface RolesOptions {
  json: boolean;
  roles?: string | undefined;
}

function describeReadiness(r: RoleManifest['services'][number]['readiness'], ports: RoleManifest['ports']): string {
  const port = (name: string) => ports.find((p) => p.name === name)?.port ?? name;
  switch (r.kind) {
    case 'http':
      return `http :${port(r.port)}${r.path} -> ${r.expect_status}`;
    case 'tcp':
      return `tcp :${port(r.port)}`;
    case 'exec':
      return `exec ${r.command.join(' ')}`;
    case 'agent':
      return 'reported by the guest agent';
  }
}

function roleLines(role: LoadedRole): string[] {
  const m = role.manifest;
  const none = '-';
  const rows: [string, string][] = [
    ['profiles', m.profiles.allowed.map((p) => (p === m.profiles.default ? `${p} (default)` : p)).join(', ')],
    [
      'services',
      m.services.map((s) => `${s.name}: ${[s.program, ...s.args].join(' ')} [ready: ${describeReadiness(s.readiness, m.ports)}]`).join('\n') || none,
    ],
    ['ports', m.ports.map((p) => `${p.name} ${p.port}/${p.protocol} (${p.exposure})`).join(', ') || none],
    ['ingress', m.ingress.allowed ? `allowed, ${m.ingress.default_enabled ? 'on' : 'off'} by default -> ${m.ingress.target_port}` : 'not allowed'],
    [
      'drives',
      m.drives
        .map((d) => `${d.device} ${d.name} -> ${d.mount} (${d.read_only ? 'ro' : 'rw'}, ${d.persistence}${d.required ? ', required' : ''})`)
        .join('\n') || none,
    ],
    ['vsock', `port ${m.vsock.agent_port}: ${m.vsock.handlers.join(', ')}`],
    ['depends on', m.depends_on.map((d) => `${d.role} ${d.condition} (${d.scope})`).join(', ') || none],
    [
      'sleep',
      m.sleep.allowed || m.sleep.warm_allowed
        ? `${[m.sleep.allowed && 'sleep', m.sleep.warm_allowed && 'warm'].filter(Boolean).join(' and ')} allowed; min runtime ${m.sleep.min_runtime_s}s; floor ${m.sleep.floor} running per tenant`
        : 'never sleeps',
    ],
    ['connectors', m.connectors.map((c) => (c.secrets.length ? `${c.name} (needs ${c.secrets.join(', ')})` : c.name)).join(', ') || none],
    [
      'lifecycle',
      `${m.lifecycle.disposable ? 'disposable; ' : ''}restart ${m.lifecycle.restart} (max ${m.lifecycle.max_restarts} in ${m.lifecycle.restart_window_s}s); boot ${m.lifecycle.boot_timeout_s}s, drain ${m.lifecycle.drain_timeout_s}s, stop ${m.lifecycle.stop_timeout_s}s`,
    ],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = [`${m.name}  ${role.hash.slice(0, 19)}`, `  ${m.description}`];
  for (const [key, value] of rows) {
    value.split('\n').forEach((line, i) => lines.push(`  ${(i === 0 ? key : '').padEnd(width)}  ${line}`));
  }
  return lines;
}

/** `mvm-actors roles`: the loaded role manifests, what each runs, exposes, mounts and allows. */
export async function rolesCommand(options: RolesOptions, output: Output): Promise<number> {
  const { catalog, problems } = await loadCatalog(options.roles);
  const roles = [...catalog.roles.values()].sort((a, b) => a.manifest.name.localeCompare(b.manifest.name));
  if (options.json) {
    printJson(output, {
      manifest_dir: catalog.dir,
      roles: roles.map((r) => ({ ...r.manifest, manifest_hash: r.hash, source: r.source })),
      profiles: [...catalog.profiles.values()].map((p) => ({ ...p.manifest, manifest_hash: p.hash, source: p.source })),
      problems,
    });
  } else {
    output.out(`${roles.length} roles from ${catalog.dir}\n`);
    output.out(roles.map((r) => roleLines(r).join('\n')).join('\n\n'));
    if (problems.length > 0) {
      output.err(`\n${problems.length} manifest problem(s); the affected manifests were not loaded:`);
      for (const p of problems) output.err(`  ✖ ${p.file}${p.path ? ` at ${p.path}` : ''}: ${p.message}`);
    }
  }
  return problems.length > 0 ? EXIT.invalid : EXIT.ok;
}
