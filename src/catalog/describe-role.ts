import type { RoleManifest } from '../schemas/role-manifest.ts';

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
    case 'openclaw-handshake':
      return `openclaw /readyz + connect :${port(r.port)} as ${r.client_role} (${r.scopes.join(', ')}) with secret ${r.token_secret} -> hello-ok`;
    case 'openclaw-node-connected':
      return 'openclaw node host connected to its gateway (first depends_on), checked by the guest agent';
  }
}

/**
 * A role manifest as labelled lines of prose: what `mvm-actors roles` prints and what
 * docs/roles.md tabulates, from one function so the two never disagree. A value with several
 * entries holds one entry per array element.
 */
export function describeRole(m: RoleManifest): [label: string, values: string[]][] {
  const orNone = (values: string[]) => (values.length > 0 ? values : ['-']);
  return [
    ['profiles', [m.profiles.allowed.map((p) => (p === m.profiles.default ? `${p} (default)` : p)).join(', ')]],
    ['services', orNone(m.services.map((s) => `${s.name}: ${[s.program, ...s.args].join(' ')} [ready: ${describeReadiness(s.readiness, m.ports)}; stop ${s.stop_timeout_s}s]`))],
    ['ports', orNone(m.ports.map((p) => `${p.name} ${p.port}/${p.protocol} (${p.exposure})`))],
    ['ingress', [m.ingress.allowed ? `allowed, ${m.ingress.default_enabled ? 'on' : 'off'} by default -> ${m.ingress.target_port}` : 'not allowed']],
    ['drives', orNone(m.drives.map((d) => `${d.device} ${d.name} -> ${d.mount} (${d.read_only ? 'ro' : 'rw'}, ${d.persistence}${d.required ? ', required' : ''}; label ${d.label})`))],
    ['vsock', [`port ${m.vsock.agent_port}: ${m.vsock.handlers.join(', ')}`]],
    ['depends on', orNone(m.depends_on.map((d) => `${d.role} ${d.condition} (${d.scope})`))],
    [
      'sleep',
      [
        m.sleep.allowed || m.sleep.warm_allowed
          ? `${[m.sleep.allowed && 'sleep', m.sleep.warm_allowed && 'warm'].filter(Boolean).join(' and ')} allowed; min runtime ${m.sleep.min_runtime_s}s; floor ${m.sleep.floor} running per tenant`
          : 'never sleeps',
      ],
    ],
    ['secrets', orNone(m.secrets.map((x) => `${x.name}${x.generate ? ` (minted: ${x.generate})` : ' (operator-supplied)'}`))],
    ['connectors', orNone(m.connectors.map((c) => `${c.name}${c.secrets.length ? ` (needs ${c.secrets.join(', ')})` : ''}${c.state_on_data ? ' [state on data drive]' : ''}`))],
    [
      'lifecycle',
      [
        `${m.lifecycle.disposable ? 'disposable; ' : ''}restart ${m.lifecycle.restart} (max ${m.lifecycle.max_restarts} in ${m.lifecycle.restart_window_s}s); boot ${m.lifecycle.boot_timeout_s}s, drain ${m.lifecycle.drain_timeout_s}s, stop ${m.lifecycle.stop_timeout_s}s`,
      ],
    ],
    [
      'pool overrides',
      [
        Object.entries(m.pool_overrides)
          .filter(([, allowed]) => allowed)
          .map(([what]) => what)
          .join(', ') || 'none',
      ],
    ],
  ];
}
