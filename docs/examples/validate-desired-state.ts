// Embedding mvm-actors in a host agent: load the role manifests and check a desired state
// before acting on it. Run it: npx tsx docs/examples/validate-desired-state.ts [desired.json]
import { readFile } from 'node:fs/promises';
import { formatIssues, loadCatalogStrict, validateDesiredState } from '../../src/index.ts';

const file = process.argv[2] ?? new URL('desired-state.json', import.meta.url).pathname;
const catalog = await loadCatalogStrict(); // the built-in manifests; pass a directory for your own
const report = validateDesiredState(JSON.parse(await readFile(file, 'utf8')), catalog);

if (!report.ok) console.error(formatIssues(report.issues));
// Even when some pools are bad, `applicable` holds everything that is still safe to apply.
for (const tenant of report.applicable?.tenants ?? []) {
  for (const pool of tenant.pools) {
    const role = catalog.roles.get(pool.role)!;
    console.log(`${tenant.tenant_id}/${pool.pool_id}: role ${pool.role} (${role.hash.slice(0, 19)}), ${pool.desired_counts.running} running`);
  }
}
process.exitCode = report.ok ? 0 : 1;
