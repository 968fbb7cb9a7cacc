import { connect, table, type ConnectOptions } from '../client.ts';
import { EXIT, printJson, type Output } from '../output.ts';

export interface StatusOptions extends ConnectOptions {
  json: boolean;
}

/** `mvm-actors status`: which server, the applied generation, instances by status, tenants. */
export async function statusCommand(options: StatusOptions, output: Output): Promise<number> {
  const client = connect(options);
  const health = await client.health();
  const [{ instances }, { tenants }] = await Promise.all([client.instances(), client.tenants()]);
  const byStatus: Record<string, number> = {};
  for (const instance of instances) byStatus[instance.status] = (byStatus[instance.status] ?? 0) + 1;
  const statuses = Object.keys(byStatus).sort();
  if (options.json) {
    printJson(output, {
      server: client.url,
      health,
      instances: { total: instances.length, by_status: Object.fromEntries(statuses.map((s) => [s, byStatus[s]])) },
      tenants: { total: tenants.length, ids: tenants.map((t) => t.tenant_id) },
    });
    return EXIT.ok;
  }
  const lines = [
    `server      ${client.url} (${health.status})`,
    `generation  ${health.generation < 0 ? 'none applied yet (run `mvm-actors apply <desired.json>`)' : health.generation}`,
    `tenants     ${tenants.length}`,
    `instances   ${instances.length}`,
  ];
  output.out(lines.join('\n'));
  if (statuses.length > 0) {
    output.out(
      table(
        ['  STATUS', 'COUNT'],
        statuses.map((s) => [`  ${s}`, String(byStatus[s])]),
      ),
    );
  }
  return EXIT.ok;
}
