import { z } from 'zod';
import { DesiredState } from './desired-state.ts';
import { InstanceRecord } from './instance.ts';
import { ProfileManifest } from './profile-manifest.ts';
import { RoleManifest } from './role-manifest.ts';

/** The documents users and tools write against, by the name `mvm-actors schema <name>` takes. */
export const PUBLISHED_SCHEMAS = {
  'desired-state': DesiredState,
  instance: InstanceRecord,
  'role-manifest': RoleManifest,
  'profile-manifest': ProfileManifest,
} as const;
export type PublishedSchemaName = keyof typeof PUBLISHED_SCHEMAS;

export function isPublishedSchemaName(name: string): name is PublishedSchemaName {
  return Object.hasOwn(PUBLISHED_SCHEMAS, name);
}

/**
 * JSON Schema (draft 2020-12) for one published document. `io: 'input'` describes what a user
 * may write, so fields with defaults are optional. Refinements that code enforces (unique ids,
 * disjoint subnets) cannot be expressed in JSON Schema; `mvm-actors validate` checks them.
 */
export function toJsonSchema(name: PublishedSchemaName): Record<string, unknown> {
  return z.toJSONSchema(PUBLISHED_SCHEMAS[name], { io: 'input', target: 'draft-2020-12' }) as Record<string, unknown>;
}
