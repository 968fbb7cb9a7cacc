import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Catalog } from '../catalog/catalog.ts';
import type { Clock } from '../common/clock.ts';
import { DesiredState } from '../schemas/desired-state.ts';
import { openStore } from '../store/lmdb-store.ts';
import { ALLOCATION_META_PREFIX, AllocationRecord } from './address-allocator.ts';
import { generateRuleset, type NetInstance, type NetOptions, type Ruleset } from './nft-ruleset.ts';

/** Where a host keeps its LMDB store (src/host/host.ts opens the same file). */
export const storePathFor = (dataDir: string) => path.join(dataDir, 'state.lmdb');

export interface NetInputs {
  desired: DesiredState;
  instances: NetInstance[];
}

/**
 * What the ruleset is generated from on a host: the applied desired state and the address
 * allocations, read from the host's store (LMDB allows readers beside a running serve). A
 * `desired` given explicitly wins over the stored one; instances keep their allocations either way.
 */
export async function readNetInputs(dataDir: string, clock: Clock, desired?: unknown): Promise<NetInputs> {
  const file = storePathFor(dataDir);
  let stored: unknown;
  const allocations: AllocationRecord[] = [];
  if (existsSync(file)) {
    const store = openStore({ path: file, clock });
    try {
      stored = (store.getMeta('desired_state') as { document?: unknown } | undefined)?.document;
      for (const key of store.metaKeys(ALLOCATION_META_PREFIX)) {
        const record = AllocationRecord.safeParse(store.getMeta(key));
        if (record.success) allocations.push(record.data);
      }
    } finally {
      await store.close();
    }
  }
  const document = desired ?? stored;
  if (document === undefined) throw new Error(`no desired state: ${file} holds none (no apply yet); pass --desired FILE`);
  const parsed = DesiredState.safeParse(document);
  if (!parsed.success) {
    throw new Error(`desired state is not valid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}; check it with \`mvm-actors validate\``);
  }
  const instances = allocations.map((a) => ({ instance_id: a.instance_id, tenant_id: a.tenant_id, pool_id: a.pool_id, ipv4: a.network.ipv4 }));
  return { desired: parsed.data, instances };
}

export function rulesetFor(inputs: NetInputs, catalog: Catalog, options: NetOptions): Ruleset {
  return generateRuleset({ desired: inputs.desired, roleOf: (name) => catalog.roles.get(name)?.manifest, instances: inputs.instances, options });
}
