import { z } from 'zod';
import { InstanceId, ManifestHash, PoolId, ProfileName, RoleName, TenantId } from './ids.ts';
import { parseIpv4 } from './ipv4.ts';
import { Revision } from './revision.ts';

/**
 * Lifecycle statuses an instance record can show. These are the top-level states of the
 * generated statechart; which of them a given role can reach is decided by its manifest
 * (a role that may not sleep never shows `sleeping`).
 */
export const INSTANCE_STATUSES = [
  'pending',
  'waiting',
  'preflight',
  'refused',
  'provisioning',
  'booting',
  'starting-services',
  'running',
  'warming',
  'warm',
  'resuming',
  'draining',
  'snapshotting',
  'sleeping',
  'waking',
  'stopping',
  'stopped',
  'failed',
  'destroying',
  'destroyed',
] as const;
export const InstanceStatus = z.enum(INSTANCE_STATUSES);

const Timestamp = z.iso.datetime({ offset: true }).describe('RFC 3339 timestamp from the injected clock.');

export const NetworkIdentity = z
  .object({
    ipv4: z.string().refine((v) => parseIpv4(v) !== undefined, { error: 'ipv4 must be a dotted-quad IPv4 address' }),
    mac: z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/, { error: 'mac must be six lower-case hex pairs, like "06:00:0a:14:01:02"' }),
    // Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
    tap: z.string().regex(/^[a-z0-9-]{1,15}$/, { error: 'tap must be 1-15 characters of a-z, 0-9 and "-" (Linux interface name limit)' }),
    vsock_cid: z.number().int().min(3).max(0xffff_fffe).describe('Guest CID; 0-2 are reserved.'),
  })
  .strict();

/** What the host persists about one microVM, alongside its actor snapshot. */
export const InstanceRecord = z
  .object({
    schema_version: z.literal(1),
    instance_id: InstanceId,
    tenant_id: TenantId,
    pool_id: PoolId,
    role: RoleName,
    profile: ProfileName,
    config_version: z.number().int().min(0),
    secrets_epoch: z.number().int().min(0),
    revision: Revision,
    network: NetworkIdentity,
    status: InstanceStatus,
    status_reason: z.string().nullable().describe('Machine-readable reason for refused or failed, else null.'),
    timestamps: z
      .object({
        created_at: Timestamp,
        updated_at: Timestamp,
        booted_at: Timestamp.nullable(),
        status_since: Timestamp,
      })
      .strict(),
    manifest_hash: ManifestHash.nullable().describe('Hash of the role manifest the instance was booted with; null before its first boot.'),
  })
  .strict()
  .meta({ id: 'InstanceRecord', title: 'mvm-actors instance record' });

export type InstanceRecord = z.infer<typeof InstanceRecord>;
export type InstanceStatus = z.infer<typeof InstanceStatus>;
