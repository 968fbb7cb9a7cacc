import { loadCatalog } from '../../catalog/load-catalog.ts';
import { formatIssues } from '../../common/issues.ts';
import { validateDesiredState } from '../../validation/validate-desired-state.ts';
import { EXIT, printJson, type Output } from '../output.ts';
import { readJsonFile } from '../read-json-file.ts';

export interface ValidateOptions {
  file: string;
  json: boolean;
  roles?: string | undefined;
}

/** `mvm-actors validate <desired.json>`: every problem with its JSON path and a hint; exit 1 if any. */
export async function validateCommand(options: ValidateOptions, output: Output): Promise<number> {
  const document = await readJsonFile(options.file);
  const { catalog, problems } = await loadCatalog(options.roles);
  const report = validateDesiredState(document, catalog);
  const applicable = report.applicable;
  const summary = applicable && {
    node_id: applicable.node_id,
    generation: applicable.generation,
    tenants: applicable.tenants.length,
    pools: applicable.tenants.reduce((n, t) => n + t.pools.length, 0),
    instances: applicable.tenants.reduce(
      (n, t) => n + t.pools.reduce((m, p) => m + p.desired_counts.running + p.desired_counts.warm + p.desired_counts.sleeping, 0),
      0,
    ),
  };
  if (options.json) {
    printJson(output, { file: options.file, ok: report.ok, issues: report.issues, rejected: report.rejected, applicable: summary, manifest_problems: problems });
    return report.ok ? EXIT.ok : EXIT.invalid;
  }
  for (const p of problems) output.err(`warning: manifest not loaded: ${p.file}${p.path ? ` at ${p.path}` : ''}: ${p.message}`);
  if (report.ok) {
    output.out(`✔ ${options.file} is valid: node ${summary!.node_id}, generation ${summary!.generation}, ${summary!.tenants} tenant(s), ${summary!.pools} pool(s), ${summary!.instances} instance(s)`);
    return EXIT.ok;
  }
  const n = report.issues.length;
  output.out(`✖ ${options.file}: ${n} problem${n === 1 ? '' : 's'}`);
  output.out(formatIssues(report.issues));
  if (summary) {
    const { tenants, pools } = report.rejected;
    output.out(
      `\n${tenants.length} tenant(s) and ${pools.length} pool(s) rejected; the rest (${summary.tenants} tenant(s), ${summary.pools} pool(s)) would still apply.`,
    );
  } else {
    output.out('\nThe document itself is unusable; nothing in it would apply.');
  }
  return EXIT.invalid;
}
