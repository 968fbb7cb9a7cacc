import type { LoadedRole } from '../../catalog/catalog.ts';
import { loadCatalog } from '../../catalog/load-catalog.ts';
import { describeRole } from '../../catalog/describe-role.ts';
import { EXIT, printJson, type Output } from '../output.ts';

export interface RolesOptions {
  json: boolean;
  roles?: string | undefined;
}

function roleLines(role: LoadedRole): string[] {
  const rows = describeRole(role.manifest);
  const width = Math.max(...rows.map(([label]) => label.length));
  const lines = [`${role.manifest.name}  ${role.hash.slice(0, 19)}`, `  ${role.manifest.description}`];
  for (const [label, values] of rows) values.forEach((value, i) => lines.push(`  ${(i === 0 ? label : '').padEnd(width)}  ${value}`));
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
