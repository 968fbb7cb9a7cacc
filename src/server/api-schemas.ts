import { z } from 'zod';
import { ID_PATTERN } from '../schemas/ids.ts';
import { InstanceStatus } from '../schemas/instance.ts';
import { RoleManifest } from '../schemas/role-manifest.ts';
import { JournalEntry } from '../store/records.ts';

/** Schemas of the HTTP API's parameters and replies; the OpenAPI document is generated from them. */

const Id = z.string().regex(ID_PATTERN).max(72);
export const TenantParams = z.object({ tenant: Id });
export const InstanceParams = z.object({ id: Id });
export const RoleParams = z.object({ role: Id });
export const SecretParams = z.object({ tenant: Id, name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/) });

export const Issue = z.object({ path: z.string(), message: z.string(), code: z.string().optional(), hint: z.string().optional() });

const Network = z.object({ ipv4: z.string(), mac: z.string(), tap: z.string(), vsock_cid: z.number() });

export const InstanceView = z
  .object({
    instance_id: z.string(),
    tenant_id: z.string(),
    pool_id: z.string(),
    role: z.string(),
    profile: z.string(),
    status: InstanceStatus.or(z.string()),
    state: z.unknown().describe('The chart state value.'),
    status_reason: z.string().nullable(),
    config_version: z.number(),
    secrets_epoch: z.number(),
    revision: z.object({ artifacts: z.string(), config_version: z.number(), secrets_epoch: z.number() }),
    network: Network,
    manifest_hash: z.string().nullable(),
    connectors: z.record(z.string(), z.object({ enabled: z.boolean(), missing: z.array(z.string()) })),
    deferred: z.object({ command: z.string(), since: z.number() }).nullable(),
    running_since: z.number().nullable(),
  })
  .meta({ id: 'Instance' });

export const InstanceDetail = InstanceView.extend({ journal: z.array(JournalEntry) }).meta({ id: 'InstanceDetail' });

export const InstanceQuery = z.object({
  tenant: Id.optional(),
  pool: Id.optional(),
  role: Id.optional(),
  state: z.string().optional().describe('Status, e.g. running, sleeping, refused.'),
});

export const TenantView = z
  .object({
    tenant_id: z.string(),
    instances: z.number(),
    by_status: z.record(z.string(), z.number()),
    floors: z.record(z.string(), z.number()),
    recent: z.array(z.object({ seq: z.number(), at: z.number(), instance_id: z.string(), outcome: z.enum(['refused', 'accepted']), command: z.string(), reason: z.string().nullable() })),
  })
  .meta({ id: 'Tenant' });

export const PlanStep = z.object({
  op: z.string(),
  tenant_id: z.string(),
  pool_id: z.string(),
  instance_id: z.string(),
  role: z.string(),
  from: z.string().nullable(),
  target: z.string(),
});

export const PlanReply = z
  .object({ generation: z.number(), steps: z.array(PlanStep), issues: z.array(Issue), rejected: z.object({ tenants: z.array(z.string()), pools: z.array(z.string()) }) })
  .meta({ id: 'Plan' });

export const ApplyReply = z
  .object({ applied: z.literal(true), generation: z.number(), steps: z.number(), issues: z.array(Issue), rejected: z.object({ tenants: z.array(z.string()), pools: z.array(z.string()) }) })
  .meta({ id: 'ApplyResult' });

export const DesiredStateReply = z.object({ generation: z.number(), document: z.unknown() }).meta({ id: 'AppliedDesiredState' });

export const CommandReply = z.object({ accepted: z.literal(true), instance_id: z.string(), command: z.string(), reason: z.string().nullable() }).meta({ id: 'CommandAccepted' });

export const RoleReply = RoleManifest.and(z.object({ manifest_hash: z.string() }));

export const SecretInfo = z.object({ name: z.string(), epoch: z.number(), updated_at: z.number(), state: z.enum(['present', 'revoked']) }).meta({ id: 'SecretInfo' });
export const SecretBody = z.object({ value: z.string().min(1).max(65_536) }).strict();
export const SecretReply = z.object({ tenant_id: z.string(), name: z.string(), secrets_epoch: z.number() });

export const EventsQuery = z.object({ since: z.coerce.number().int().min(0).default(0), token: z.string().optional() });

/** One WebSocket message of /v1/events: a journal entry (replayed or live). */
export const EventMessage = z
  .discriminatedUnion('type', [
    z.object({ type: z.literal('journal'), entry: JournalEntry }),
    z.object({ type: z.literal('replayed'), seq: z.number().describe('The last seq of the replay; live entries follow.') }),
  ])
  .meta({ id: 'EventMessage' });
