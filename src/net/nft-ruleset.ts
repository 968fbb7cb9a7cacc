import { z } from 'zod';
import { bridgeName, hostAddressRange } from '../host/addressing.ts';
import { TENANT_NET_ID_MAX, type DesiredState, type PoolSpec, type TenantSpec } from '../schemas/desired-state.ts';
import { formatCidr, formatIpv4, parseIpv4 } from '../schemas/ipv4.ts';
import type { RoleManifest } from '../schemas/role-manifest.ts';

/**
 * The host's whole nftables policy for tenant networks, as text for `nft -f`. Pure: the same
 * desired state, manifests, instance addresses and options give byte-identical output (tenants
 * sorted by net id, instances by address).
 *
 * One `table inet mvm`: a single table (not an ip/ip6 split) so one `nft -f` replaces all of it
 * atomically, and the inet family lets the forward chain also drop IPv6 from guests, which are
 * IPv4 only. The file starts with `table` + `delete table`, so applying it replaces whatever the
 * table held, in one transaction, whether or not it existed. Other tables on the host are left
 * alone, which is why every base chain has policy accept and drops only tenant traffic: a drop
 * in a chain of ours is final, an accept is not.
 *
 * Per tenant: a bridge (`mvbr<net id>`) whose address is the tenant gateway, and two chains that
 * the forward chain reaches through verdict maps keyed by interface (one lookup, however many
 * tenants):
 * - `from_t<id>` (packets a guest sends through the host): IPv6 dropped, a source outside the
 *   tenant subnet dropped, the tenant's own bridge accepted, any other tenant bridge dropped (so
 *   the host never routes between tenants), the rest is egress, masqueraded in postrouting.
 * - `to_t<id>` (new connections from outside into the tenant): accepted only when DNAT'ed by an
 *   ingress rule to an address, protocol and port listed in `ingress_targets`; all else dropped.
 * Input from any tenant bridge: the host's control ports are dropped first, then only replies and
 * an echo request to the guest's own gateway are accepted; nothing else from a guest reaches the
 * host, on any of its addresses.
 *
 * Ingress: a pool's instances get external traffic only when its role allows ingress
 * (`ingress.allowed`) and the pool enables it (`ingress.enabled`, default the role's
 * `ingress.default_enabled`). The host port is `ingressPortBase + tenant_net_id`, DNAT'ed to the
 * role's `ingress.target_port` (spread by source address over the pool's instances).
 */

export const NetOptions = z
  .object({
    table: z
      .string()
      .regex(/^[a-z][a-z0-9_]{0,31}$/, { error: 'table must be 1-32 characters of a-z, 0-9 and "_", starting with a letter' })
      .default('mvm'),
    controlPorts: z
      .array(z.number().int().min(1).max(65_535))
      .min(1, { error: 'controlPorts must name at least the serve API port, so guests cannot reach it' })
      .describe('Host TCP ports no guest may reach, on any host address (the serve API port).'),
    ingressPortBase: z
      .number()
      .int()
      .min(1024)
      .max(65_535 - TENANT_NET_ID_MAX, { error: `ingressPortBase must be at most ${65_535 - TENANT_NET_ID_MAX}, so that base + tenant_net_id is a port` })
      .default(20_000)
      .describe('A tenant ingress listens on host port ingressPortBase + tenant_net_id.'),
  })
  .strict();
export type NetOptions = z.input<typeof NetOptions>;

/** An instance with an address on this host (from the address allocator). */
export interface NetInstance {
  instance_id: string;
  tenant_id: string;
  pool_id: string;
  ipv4: string;
}

export interface RulesetInput {
  desired: Pick<DesiredState, 'generation' | 'tenants'>;
  roleOf: (name: string) => RoleManifest | undefined;
  instances: readonly NetInstance[];
  options: NetOptions;
}

export interface IngressPlan {
  tenant_id: string;
  pool_id: string;
  protocol: 'tcp' | 'udp';
  host_port: number;
  target_port: number;
  targets: string[];
}

export interface TenantPlan {
  tenant: TenantSpec;
  bridge: string;
  gateway: string;
  prefix: number;
  subnet: string;
  ingress: IngressPlan | null;
}

export interface Ruleset {
  table: string;
  text: string;
  tenants: TenantPlan[];
}

/** A desired state the ruleset cannot express; names the tenant and the field to change. */
export class RulesetError extends Error {
  override readonly name = 'RulesetError';
}

function ingressEnabled(pool: PoolSpec, role: RoleManifest): boolean {
  return role.ingress.allowed && role.ingress.target_port !== null && (pool.ingress?.enabled ?? role.ingress.default_enabled);
}

const byAddress = (a: string, b: string) => parseIpv4(a)! - parseIpv4(b)!;

/** Bridges, gateways and ingress of each tenant, sorted by tenant_net_id. */
export function planTenants(input: RulesetInput, controlPorts: readonly number[], ingressPortBase: number): TenantPlan[] {
  const tenants = [...input.desired.tenants].sort((a, b) => a.tenant_net_id - b.tenant_net_id);
  return tenants.map((tenant) => {
    const range = hostAddressRange(tenant);
    const ingressPools = tenant.pools.filter((pool) => {
      const role = input.roleOf(pool.role);
      if (!role) throw new RulesetError(`tenant "${tenant.tenant_id}" pool "${pool.pool_id}": role "${pool.role}" is not loaded; load its manifest (--roles) or remove the pool`);
      return ingressEnabled(pool, role);
    });
    if (ingressPools.length > 1) {
      throw new RulesetError(
        `tenant "${tenant.tenant_id}": pools ${ingressPools.map((p) => `"${p.pool_id}"`).join(', ')} all enable ingress, but a tenant has one ingress port (ingressPortBase + tenant_net_id); set ingress.enabled to false on all but one`,
      );
    }
    let ingress: IngressPlan | null = null;
    const pool = ingressPools[0];
    if (pool) {
      const role = input.roleOf(pool.role)!;
      const port = role.ports.find((p) => p.name === role.ingress.target_port)!;
      const host_port = ingressPortBase + tenant.tenant_net_id;
      if (controlPorts.includes(host_port)) {
        throw new RulesetError(`tenant "${tenant.tenant_id}": its ingress port ${host_port} (ingressPortBase + tenant_net_id) is a control port; choose another ingressPortBase`);
      }
      const targets = input.instances.filter((i) => i.tenant_id === tenant.tenant_id && i.pool_id === pool.pool_id).map((i) => i.ipv4).sort(byAddress);
      ingress = { tenant_id: tenant.tenant_id, pool_id: pool.pool_id, protocol: port.protocol, host_port, target_port: port.port, targets };
    }
    return { tenant, bridge: bridgeName(tenant.tenant_net_id), gateway: formatIpv4(range.gateway), prefix: range.subnet.prefix, subnet: formatCidr(range.subnet), ingress };
  });
}

const q = (text: string) => JSON.stringify(text);

function elements(items: string[]): string {
  return items.length === 0 ? '' : `\t\telements = { ${items.join(', ')} }\n`;
}

export function generateRuleset(input: RulesetInput): Ruleset {
  const parsed = NetOptions.safeParse(input.options);
  if (!parsed.success) throw new RulesetError(`net options: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ')}`);
  const { table, controlPorts, ingressPortBase } = parsed.data;
  const tenants = planTenants(input, controlPorts, ingressPortBase);
  const ports = [...new Set(controlPorts)].sort((a, b) => a - b);
  const name = (t: TenantPlan) => `tenant ${t.tenant.tenant_id}`;
  const ingress = tenants.flatMap((t) => (t.ingress && t.ingress.targets.length > 0 ? [{ t, i: t.ingress }] : []));

  const out: string[] = [];
  out.push(`# Generated by mvm-actors from desired-state generation ${input.desired.generation}; do not edit.`);
  out.push(`# Applied with nft -f: the first two lines replace the whole table in one transaction.`);
  out.push(`table inet ${table}`, `delete table inet ${table}`, `table inet ${table} {`);
  out.push(`\tcomment ${q(`mvm-actors tenant isolation: ${tenants.length} tenants`)}`);
  const set = (setName: string, type: string, items: string[], comment: string, flags?: string) =>
    `\tset ${setName} {\n\t\ttype ${type}\n${flags ? `\t\tflags ${flags}\n` : ''}\t\tcomment ${q(comment)}\n${elements(items)}\t}`;
  const map = (mapName: string, items: string[], comment: string) => `\tmap ${mapName} {\n\t\ttype ifname : verdict\n\t\tcomment ${q(comment)}\n${elements(items)}\t}`;
  out.push(set('tenant_bridges', 'ifname', tenants.map((t) => q(t.bridge)), 'one bridge per tenant'));
  out.push(set('tenant_subnets', 'ipv4_addr', tenants.map((t) => t.subnet), 'tenant subnets, masqueraded on egress', 'interval'));
  out.push(set('guest_gateways', 'ifname . ipv4_addr', tenants.map((t) => `${q(t.bridge)} . ${t.gateway}`), "each tenant's gateway address on its own bridge"));
  out.push(set('ingress_targets', 'ipv4_addr . inet_proto . inet_service', ingress.flatMap(({ i }) => i.targets.map((a) => `${a} . ${i.protocol} . ${i.target_port}`)), 'instance ports reachable through ingress'));
  out.push(map('from_tenant', tenants.map((t) => `${q(t.bridge)} : jump from_t${t.tenant.tenant_net_id}`), 'packets from a tenant bridge'));
  out.push(map('to_tenant', tenants.map((t) => `${q(t.bridge)} : jump to_t${t.tenant.tenant_net_id}`), 'packets into a tenant bridge'));

  const chain = (chainName: string, header: string | null, rules: string[], comment?: string) =>
    `\tchain ${chainName} {\n${comment ? `\t\tcomment ${q(comment)}\n` : ''}${header ? `\t\t${header}\n` : ''}${rules.map((r) => `\t\t${r}\n`).join('')}\t}`;

  out.push(
    chain(
      'prerouting',
      'type nat hook prerouting priority dstnat; policy accept;',
      ingress.map(({ t, i }) => {
        const to = i.targets.length === 1 ? `${i.targets[0]}:${i.target_port}` : `jhash ip saddr mod ${i.targets.length} map { ${i.targets.map((a, n) => `${n} : ${a}`).join(', ')} }:${i.target_port}`;
        return `iifname != @tenant_bridges ${i.protocol} dport ${i.host_port} dnat ip to ${to} comment ${q(`ingress: ${name(t)}, pool ${i.pool_id}`)}`;
      }),
    ),
  );
  out.push(chain('postrouting', 'type nat hook postrouting priority srcnat; policy accept;', [`ip saddr @tenant_subnets oifname != @tenant_bridges masquerade comment "egress from tenant subnets"`]));
  out.push(
    chain('input', 'type filter hook input priority filter; policy accept;', [
      `iifname @tenant_bridges tcp dport { ${ports.join(', ')} } drop comment "guests never reach the host control ports"`,
      `iifname @tenant_bridges ct state established,related accept comment "replies to the host"`,
      `iifname . ip daddr @guest_gateways icmp type echo-request accept comment "a guest may ping its own gateway"`,
      `iifname @tenant_bridges drop comment "nothing else from a guest reaches the host"`,
    ]),
  );
  out.push(
    chain('forward', 'type filter hook forward priority filter; policy accept;', [
      `ct state established,related accept comment "replies"`,
      `iifname vmap @from_tenant comment "from a tenant: its from_t chain decides"`,
      `oifname vmap @to_tenant comment "into a tenant from outside: its to_t chain decides"`,
    ]),
  );
  for (const t of tenants) {
    const id = t.tenant.tenant_net_id;
    out.push(
      chain(
        `from_t${id}`,
        null,
        [
          `meta nfproto ipv6 drop comment "guests are IPv4 only"`,
          `ip saddr != ${t.subnet} drop comment "source outside the tenant subnet"`,
          `oifname ${q(t.bridge)} accept comment "within the tenant"`,
          `oifname @tenant_bridges drop comment "to another tenant"`,
          `accept comment "egress"`,
        ],
        `${name(t)} (net ${id}, ${t.subnet}): what its guests send`,
      ),
    );
    out.push(
      chain(
        `to_t${id}`,
        null,
        [
          ...(t.ingress && t.ingress.targets.length > 0
            ? [`ct status dnat ip daddr . meta l4proto . th dport @ingress_targets accept comment ${q(`ingress to pool ${t.ingress.pool_id}`)}`]
            : []),
          `drop comment "no other way in from outside"`,
        ],
        `${name(t)} (net ${id}, ${t.subnet}): new connections from outside`,
      ),
    );
  }
  out.push('}');
  return { table, text: `${out.join('\n')}\n`, tenants };
}
