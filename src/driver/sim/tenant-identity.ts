import { readFileSync } from 'node:fs';
import { TENANT_NET_ID_MAX } from '../../schemas/desired-state.ts';

/**
 * OS-level tenant isolation for the simulator: when the driver runs as root, each tenant's
 * simulated VM processes run under their own uid and gid, `uidBase + tenant_net_id` (both the
 * same number), and the instance's drives are owned by it. With the default base 90000, tenants
 * 1-4094 get uids 90001-94094: above 65535 (systemd's dynamic users end at 65519, nobody is
 * 65534) and below 100000, where /etc/subuid ranges for containers start by default. The uids
 * need no /etc/passwd entry; one that has an entry belongs to somebody else and is refused.
 *
 * Without root nothing can change owner, so every VM runs as the user running the control plane
 * and tenants are separated by paths only (the fallback `mvm-actors dev` announces).
 */

export const DEFAULT_UID_BASE = 90_000;

/** `isolation` of SimDriverOptions: per-tenant uids from `uidBase`, or `false` for paths only. */
export type TenantIsolationOption = { uidBase?: number } | false;

export interface TenantIsolation {
  uidBase: number;
}

export interface TenantIdentity {
  uid: number;
  gid: number;
}

const isRoot = () => process.getuid?.() === 0;

/**
 * Resolves the option: undefined means "per-tenant uids when root, else paths only". Asking for
 * per-tenant uids without root is a configuration error, not a silent downgrade.
 */
export function resolveIsolation(option: TenantIsolationOption | undefined): TenantIsolation | null {
  if (option === false) return null;
  if (option === undefined && !isRoot()) return null;
  if (!isRoot()) throw new Error('SimDriverOptions.isolation: per-tenant uids need root (chown and setuid); run as root or pass isolation: false');
  const uidBase = option?.uidBase ?? DEFAULT_UID_BASE;
  if (!Number.isInteger(uidBase) || uidBase < 1000 || uidBase + TENANT_NET_ID_MAX > 0x7fff_ffff) {
    throw new Error(`SimDriverOptions.isolation.uidBase: ${uidBase} must be a whole number from 1000 to ${0x7fff_ffff - TENANT_NET_ID_MAX}, so that base + tenant_net_id stays a valid, non-system uid`);
  }
  return { uidBase };
}

/**
 * The tenant network id of an instance, read from its tap name (`mv<tenant_net_id>-<host number>`,
 * src/host/addressing.ts): the driver port does not carry the id on its own.
 */
export function tenantNetIdFromTap(tap: string): number | null {
  const match = /^mv([0-9]{1,4})-[0-9]+$/.exec(tap);
  if (!match) return null;
  const id = Number(match[1]);
  return id >= 1 && id <= TENANT_NET_ID_MAX ? id : null;
}

/** The uid and gid of a tenant's VM processes; throws (naming the fix) when none can be derived. */
export function tenantIdentity(isolation: TenantIsolation, tenantId: string, tap: string): TenantIdentity {
  const netId = tenantNetIdFromTap(tap);
  if (netId === null) throw new Error(`tenant ${tenantId}: network.tap ${JSON.stringify(tap)} does not carry a tenant_net_id (expected mv<tenant_net_id>-<n>), so no tenant uid can be derived; pass isolation: false to run without per-tenant uids`);
  const uid = isolation.uidBase + netId;
  const owner = passwdOwnerOf(uid);
  if (owner !== null) throw new Error(`tenant ${tenantId}: uid ${uid} (isolation.uidBase ${isolation.uidBase} + tenant_net_id ${netId}) belongs to user ${owner} in /etc/passwd; choose another isolation.uidBase`);
  return { uid, gid: uid };
}

function passwdOwnerOf(uid: number): string | null {
  let text: string;
  try {
    text = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    const [name, , id] = line.split(':');
    if (name && Number(id) === uid) return name;
  }
  return null;
}
