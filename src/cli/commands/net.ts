import { loadCatalogStrict } from '../../catalog/load-catalog.ts';
import { systemClock } from '../../common/clock.ts';
import { HostNetwork } from '../../net/host-network.ts';
import { readNetInputs, rulesetFor } from '../../net/net-inputs.ts';
import { NetOptions } from '../../net/nft-ruleset.ts';
import { defaultDataDir } from '../data-dir.ts';
import { EXIT, printJson, UsageError, type Output } from '../output.ts';
import { readJsonFile } from '../read-json-file.ts';

export interface NetCommandOptions {
  args: string[];
  json: boolean;
  dataDir: string | undefined;
  roles: string | undefined;
  desired: string | undefined;
  /** The serve listen address; its port is the control port guests must not reach. */
  listen: string;
  ingressPortBase: string | undefined;
}

const USAGE = 'net: expected `net show|apply|verify` (see `mvm-actors help`)';

function controlPort(listen: string): number {
  const match = /:(\d{1,5})$/.exec(listen);
  const port = match ? Number(match[1]) : NaN;
  if (!match || port < 1 || port > 65_535) throw new UsageError(`--listen ${listen}: expected HOST:PORT; its port is the control port guests must not reach`);
  return port;
}

/**
 * `mvm-actors net show|apply|verify`: the host's tenant networking, from the applied desired
 * state and the address allocations in the data directory's store (or --desired FILE).
 * show prints the nftables ruleset; apply creates the bridges, enables forwarding and replaces
 * the table atomically; verify compares the live table with the generated one, one line per
 * difference, and exits 1 on drift.
 */
export async function netCommand(options: NetCommandOptions, output: Output): Promise<number> {
  const [verb, ...extra] = options.args;
  if (verb === undefined || !['show', 'apply', 'verify'].includes(verb)) throw new UsageError(USAGE);
  if (extra.length > 0) throw new UsageError(`net ${verb}: unexpected argument "${extra[0]}"`);
  if (options.ingressPortBase !== undefined && !/^\d{1,5}$/.test(options.ingressPortBase)) throw new UsageError(`--ingress-port-base ${options.ingressPortBase}: expected a port number`);
  const netOptions = NetOptions.safeParse({
    controlPorts: [controlPort(options.listen)],
    ...(options.ingressPortBase !== undefined ? { ingressPortBase: Number(options.ingressPortBase) } : {}),
  });
  if (!netOptions.success) throw new UsageError(netOptions.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  const catalog = await loadCatalogStrict(options.roles);
  const desired = options.desired !== undefined ? await readJsonFile(options.desired) : undefined;
  const inputs = await readNetInputs(options.dataDir ?? defaultDataDir(), systemClock, desired);
  const ruleset = rulesetFor(inputs, catalog, netOptions.data);
  const network = new HostNetwork({ table: ruleset.table });

  if (verb === 'show') {
    if (options.json) printJson(output, { table: ruleset.table, tenants: ruleset.tenants.map(({ tenant, ...plan }) => ({ tenant_id: tenant.tenant_id, tenant_net_id: tenant.tenant_net_id, ...plan })), ruleset: ruleset.text });
    else output.out(ruleset.text.trimEnd());
    return EXIT.ok;
  }
  if (verb === 'apply') {
    const result = await network.sync(inputs.desired.tenants, ruleset);
    if (options.json) printJson(output, { applied: true, table: ruleset.table, ...result });
    else output.out(`applied table inet ${ruleset.table}: ${result.bridges.length} tenant bridges${result.removed.length ? `, removed ${result.removed.join(', ')}` : ''}`);
    return EXIT.ok;
  }
  const result = await network.verify(ruleset);
  if (options.json) printJson(output, result);
  else if (result.ok) output.out(`table inet ${ruleset.table} matches the generated ruleset`);
  else {
    output.out(`table inet ${ruleset.table} drifted from the generated ruleset: ${result.differences.length} difference${result.differences.length === 1 ? '' : 's'}`);
    for (const d of result.differences) output.out(`  ${d.kind.padEnd(10)} ${d.where}: ${d.detail}`);
    output.out('run `mvm-actors net apply` to restore it');
  }
  return result.ok ? EXIT.ok : EXIT.invalid;
}
