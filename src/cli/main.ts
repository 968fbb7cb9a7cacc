import { parseArgs } from 'node:util';
import { CatalogError } from '../catalog/load-catalog.ts';
import { NixStorePathError } from '../catalog/nix-store-guard.ts';
import { ChartCompositionError } from '../../machines/compose-instance-chart.ts';
import { ApiRequestError, type ConnectOptions } from './client.ts';
import { applyCommand } from './commands/apply.ts';
import { bundleCommand } from './commands/bundle.ts';
import { chartCommand } from './commands/chart.ts';
import { instanceCommand, type InstanceCommand } from './commands/command.ts';
import { eventsCommand } from './commands/events.ts';
import { instancesCommand } from './commands/instances.ts';
import { planCommand } from './commands/plan.ts';
import { rolesCommand } from './commands/roles.ts';
import { schemaCommand } from './commands/schema.ts';
import { secretCommand } from './commands/secret.ts';
import { statusCommand } from './commands/status.ts';
import { validateCommand } from './commands/validate.ts';
import { EXIT, processOutput, UsageError, type Output } from './output.ts';

const HELP = `mvm-actors: control plane for multi-tenant Firecracker microVM fleets

Usage: mvm-actors <command> [options]

Commands:
  roles [--roles DIR] [--json]              List the role manifests: services, ports, ingress,
                                            drives, vsock handlers, dependencies, sleep policy
  validate <desired.json|-> [--roles DIR] [--json]
                                            Check a desired-state document; every problem with
                                            its JSON path and a hint; exit 1 if any
  schema [desired-state|instance|role-manifest|profile-manifest]
                                            Print the JSON Schema of a document
  chart <role> [--format json|dot|mermaid|svg] [--connectors a,b] [--no-ingress] [--roles DIR]
                                            Print the statechart generated from a role manifest
                                            (default: ingress on where allowed, every connector)
  dev [--tenants N] [--desired FILE] [--state-dir DIR] [--down] [--openclaw]
                                            A simulated fleet on this machine: serve with the
                                            simulation driver and an example desired state
                                            (--openclaw: the real OpenClaw gateway and node
                                            hosts; root and npm run openclaw:install)
  serve [--listen 127.0.0.1:7070] [--data-dir DIR] [--driver fake|sim|firecracker] [--roles DIR]
        [--desired FILE] [--token-file F] [--log-level info]
        [--firecracker-bin PATH] [--artifacts-dir DIR] [--jailer-bin PATH] [--chroot-base DIR]
        [--network host|none] [--ingress-port-base 20000] [--openclaw]
                                            Run the host: restore actors, serve the API and the
                                            visualizer (/viz); SIGTERM stops it, never the VMs.
                                            With --driver firecracker it also manages the tenant
                                            bridges, taps and nftables ruleset as root
                                            (--network none: the operator does, e.g. net apply)
  openclaw install|status [--dir DIR] [--json]
                                            Install (or show) the pinned OpenClaw and its Node 24
                                            in a cache dir (default: $MVM_OPENCLAW_DIR, else
                                            $XDG_CACHE_HOME/mvm-actors/openclaw-<version>)
  bundle import <dir> [--name id] [--artifacts-dir DIR]
                                            Copy a Nix-built role bundle into the artifact store
                                            (<data-dir>/artifacts), keyed by content hash;
                                            checks its manifest and Firecracker config
  bundle list | bundle verify <id|sha256:hex>
                                            The stored bundles; re-hash one (exit 1 if altered)
  net show|apply|verify [--data-dir DIR] [--desired FILE] [--listen HOST:PORT]
      [--ingress-port-base 20000] [--json]
                                            Tenant networking as root: print the nftables
                                            ruleset, apply it with the tenant bridges, or compare
                                            the live table with it (exit 1 on drift); guests never
                                            reach the --listen port
  help                                      This text

Commands that talk to a running serve:
  status                                    Server, applied generation, instances by status,
                                            tenants
  apply <desired.json|->                    Apply a desired state (PUT /v1/desired-state);
                                            exit 1 if it is refused, stale, or applied in part
  plan <desired.json|->                     The steps applying it would take, without applying
  instances [--tenant t] [--role r] [--pool p] [--state s]
                                            One row per instance: status, reason, address
  sleep|wake|stop|start <id>                Ask an instance to change; exit 1 with the reason
                                            when a rule refuses (e.g. sleep-floor:gateway:1)
  events [--since n] [--follow]             The journal after seq n, one line per transition;
                                            --follow keeps streaming until Ctrl-C
  secret set <tenant> <name> [--from-file F]
                                            Store a secret read from F or standard input (never
                                            from an argument: that lands in shell history)
  secret list <tenant>                      Names, epochs and states; values are never shown
  secret delete <tenant> <name>             Remove a secret (the tenant's secrets_epoch moves on)

Options:
  --roles DIR   Manifest directory holding roles/ and profiles/ (default: the built-in
                manifests exported from nix/). Paths in /nix/store are refused.
  --json        Machine-readable output: the API's JSON (events: one message per line)
  --server URL  The serve to talk to (default: $MVM_ACTORS_SERVER, else the local serve
                recorded in <data-dir>/server.json)
  --token-file F
                The API token (default: $MVM_ACTORS_TOKEN holding the token itself, else the
                token file named in server.json, else <data-dir>/api-token)
  --data-dir DIR
                The host's state directory (default: $MVM_ACTORS_DATA_DIR, else
                $XDG_STATE_HOME/mvm-actors or ~/.local/state/mvm-actors)

Exit codes: 0 ok, 1 invalid input or manifests, or a request the server refused (invalid,
stale, not found, refused by a rule), 2 usage or I/O error (no server, wrong token).`;

const COMMAND_OPTIONS = {
  json: { type: 'boolean', default: false },
  roles: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
  format: { type: 'string', default: 'json' },
  connectors: { type: 'string' },
  'no-ingress': { type: 'boolean', default: false },
  listen: { type: 'string', default: '127.0.0.1:7070' },
  tenants: { type: 'string' },
  'state-dir': { type: 'string' },
  'dev-listen': { type: 'string' },
  down: { type: 'boolean', default: false },
  openclaw: { type: 'boolean', default: false },
  'data-dir': { type: 'string' },
  driver: { type: 'string', default: 'fake' },
  desired: { type: 'string' },
  'token-file': { type: 'string' },
  'log-level': { type: 'string', default: 'info' },
  server: { type: 'string' },
  tenant: { type: 'string' },
  role: { type: 'string' },
  pool: { type: 'string' },
  state: { type: 'string' },
  since: { type: 'string', default: '0' },
  follow: { type: 'boolean', default: false },
  'from-file': { type: 'string' },
  dir: { type: 'string' },
  name: { type: 'string' },
  'artifacts-dir': { type: 'string' },
  'firecracker-bin': { type: 'string' },
  'jailer-bin': { type: 'string' },
  'chroot-base': { type: 'string' },
  network: { type: 'string' },
  'ingress-port-base': { type: 'string' },
} as const;

function parseSince(since: string): number {
  if (!/^\d+$/.test(since) || !Number.isSafeInteger(Number(since))) throw new UsageError(`--since ${since}: expected a journal sequence number (0 or more)`);
  return Number(since);
}

/** Runs one CLI invocation and returns its exit code. Never throws: errors become messages. */
export async function main(argv: string[], output: Output = processOutput): Promise<number> {
  let json = false;
  try {
    const { values, positionals } = parseArgs({ args: argv, options: COMMAND_OPTIONS, allowPositionals: true, strict: true });
    json = values.json;
    const [command, ...rest] = positionals;
    if (values.help || command === undefined || command === 'help') {
      output.out(HELP);
      return command === undefined && !values.help ? EXIT.usage : EXIT.ok;
    }
    const expectArgs = (max: number) => {
      if (rest.length > max) throw new UsageError(`${command}: unexpected argument "${rest[max]}"`);
    };
    const connection: ConnectOptions = { server: values.server, tokenFile: values['token-file'], dataDir: values['data-dir'] };
    const fileArg = () => {
      expectArgs(1);
      const file = rest[0];
      if (file === undefined) throw new UsageError(`${command}: give the desired-state file (or - for stdin)`);
      return file;
    };
    switch (command) {
      case 'status':
        expectArgs(0);
        return await statusCommand({ ...connection, json }, output);
      case 'apply':
        return await applyCommand({ ...connection, json, file: fileArg() }, output);
      case 'plan':
        return await planCommand({ ...connection, json, file: fileArg() }, output);
      case 'instances':
        expectArgs(0);
        return await instancesCommand({ ...connection, json, tenant: values.tenant, role: values.role, pool: values.pool, state: values.state }, output);
      case 'sleep':
      case 'wake':
      case 'stop':
      case 'start': {
        expectArgs(1);
        const id = rest[0];
        if (id === undefined) throw new UsageError(`${command}: name the instance, e.g. \`mvm-actors ${command} acme-workers-0\` (see \`mvm-actors instances\`)`);
        return await instanceCommand({ ...connection, json, command: command as InstanceCommand, id }, output);
      }
      case 'events':
        expectArgs(0);
        return await eventsCommand({ ...connection, json, since: parseSince(values.since), follow: values.follow }, output);
      case 'secret':
        return await secretCommand({ ...connection, json, args: rest, fromFile: values['from-file'] }, output);
      case 'bundle':
        return await bundleCommand({ args: rest, json, name: values.name, artifactsDir: values['artifacts-dir'], dataDir: values['data-dir'] }, output);
      case 'roles':
        expectArgs(0);
        return await rolesCommand({ json: values.json, roles: values.roles }, output);
      case 'validate': {
        expectArgs(1);
        const file = rest[0];
        if (file === undefined) throw new UsageError('validate: give the desired-state file to check (or - for stdin)');
        return await validateCommand({ file, json: values.json, roles: values.roles }, output);
      }
      case 'schema':
        expectArgs(1);
        return schemaCommand({ name: rest[0], json: values.json }, output);
      case 'dev':
        expectArgs(0);
        return await (await import('./commands/dev.ts')).devCommand(
          { tenants: Number(values.tenants ?? 1), desired: values.desired, stateDir: values['state-dir'], listen: values['dev-listen'] ?? '127.0.0.1:0', down: values.down, openclaw: values.openclaw },
          output,
        );
      case 'serve':
        expectArgs(0);
        // Loaded only here: the server stack (fastify, LMDB, the host) is not needed by client commands.
        return await (await import('./commands/serve.ts')).serveCommand(
          { listen: values.listen, dataDir: values['data-dir'], driver: values.driver, roles: values.roles, desired: values.desired, tokenFile: values['token-file'], logLevel: values['log-level'],
            firecrackerBin: values['firecracker-bin'], jailerBin: values['jailer-bin'], chrootBase: values['chroot-base'], artifactsDir: values['artifacts-dir'],
            network: values.network, ingressPortBase: values['ingress-port-base'], openclaw: values.openclaw },
          output,
        );
      case 'net':
        return await (await import('./commands/net.ts')).netCommand(
          { args: rest, json, dataDir: values['data-dir'], roles: values.roles, desired: values.desired, listen: values.listen, ingressPortBase: values['ingress-port-base'] },
          output,
        );
      case 'openclaw':
        return await (await import('./commands/openclaw.ts')).openclawCommand({ args: rest, dir: values.dir, json }, output);
      case 'chart': {
        expectArgs(1);
        const role = rest[0];
        if (role === undefined) throw new UsageError('chart: name the role to draw, e.g. `mvm-actors chart gateway`');
        return await chartCommand({ role, format: values.format, roles: values.roles, connectors: values.connectors, noIngress: values['no-ingress'] }, output);
      }
      default:
        throw new UsageError(`unknown command "${command}"; run \`mvm-actors help\``);
    }
  } catch (error) {
    if (error instanceof ApiRequestError) {
      if (json) output.out(JSON.stringify(error.envelope, null, 2));
      output.err(error.lines().map((line, i) => (i === 0 ? `mvm-actors: ${line}` : line)).join('\n'));
      return error.exitCode;
    }
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      output.err(`mvm-actors: ${(error as Error).message}`);
      return EXIT.usage;
    }
    if (error instanceof NixStorePathError || error instanceof CatalogError || error instanceof ChartCompositionError) {
      output.err(`mvm-actors: ${error.message}`);
      return EXIT.usage;
    }
    output.err(`mvm-actors: unexpected error: ${(error as Error).stack ?? String(error)}`);
    return EXIT.usage;
  }
}
