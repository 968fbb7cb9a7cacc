import { connect, table, type ConnectOptions } from '../client.ts';
import { EXIT, printJson, type Output } from '../output.ts';

export interface InstancesOptions extends ConnectOptions {
  json: boolean;
  tenant?: string | undefined;
  role?: string | undefined;
  pool?: string | undefined;
  state?: string | undefined;
}

/** `mvm-actors instances [--tenant t] [--role r] [--pool p] [--state s]`: one row per instance. */
export async function instancesCommand(options: InstancesOptions, output: Output): Promise<number> {
  const reply = await connect(options).instances({ tenant: options.tenant, role: options.role, pool: options.pool, state: options.state });
  if (options.json) {
    printJson(output, reply);
    return EXIT.ok;
  }
  if (reply.instances.length === 0) {
    const filters = (['tenant', 'role', 'pool', 'state'] as const).filter((k) => options[k] !== undefined).map((k) => `--${k} ${options[k]}`);
    output.out(filters.length > 0 ? `no instances match ${filters.join(' ')}` : 'no instances; apply a desired state with `mvm-actors apply <desired.json>`');
    return EXIT.ok;
  }
  output.out(
    table(
      ['ID', 'TENANT', 'ROLE', 'STATUS', 'REASON', 'IP'],
      reply.instances.map((i) => [i.instance_id, i.tenant_id, i.role, i.status, i.status_reason ?? '-', i.network.ipv4]),
    ),
  );
  return EXIT.ok;
}
