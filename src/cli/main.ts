import { parseArgs } from 'node:util';
import { CatalogError } from '../catalog/load-catalog.ts';
import { NixStorePathError } from '../catalog/nix-store-guard.ts';
import { ChartCompositionError } from '../../machines/compose-instance-chart.ts';
import { chartCommand } from './commands/chart.ts';
import { rolesCommand } from './commands/roles.ts';
import { schemaCommand } from './commands/schema.ts';
import { serveCommand } from './commands/serve.ts';
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
  chart <role> [--format json|dot|mermaid] [--connectors a,b] [--no-ingress] [--roles DIR]
                                            Print the statechart generated from a role manifest
                                            (default: ingress on where allowed, every connector)
  serve [--listen 127.0.0.1:7070] [--data-dir DIR] [--driver fake] [--roles DIR]
        [--desired FILE] [--token-file F] [--log-level info]
                                            Run the host: restore actors, serve the API and the
                                            visualizer (/viz); SIGTERM stops it, never the VMs
  help                                      This text

Options:
  --roles DIR   Manifest directory holding roles/ and profiles/ (default: the built-in
                manifests exported from nix/). Paths in /nix/store are refused.
  --json        Machine-readable output

Exit codes: 0 ok, 1 invalid input or manifests, 2 usage or I/O error.`;

const COMMAND_OPTIONS = {
  json: { type: 'boolean', default: false },
  roles: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
  format: { type: 'string', default: 'json' },
  connectors: { type: 'string' },
  'no-ingress': { type: 'boolean', default: false },
  listen: { type: 'string', default: '127.0.0.1:7070' },
  'data-dir': { type: 'string' },
  driver: { type: 'string', default: 'fake' },
  desired: { type: 'string' },
  'token-file': { type: 'string' },
  'log-level': { type: 'string', default: 'info' },
} as const;

/** Runs one CLI invocation and returns its exit code. Never throws: errors become messages. */
export async function main(argv: string[], output: Output = processOutput): Promise<number> {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: COMMAND_OPTIONS, allowPositionals: true, strict: true });
    const [command, ...rest] = positionals;
    if (values.help || command === undefined || command === 'help') {
      output.out(HELP);
      return command === undefined && !values.help ? EXIT.usage : EXIT.ok;
    }
    const expectArgs = (max: number) => {
      if (rest.length > max) throw new UsageError(`${command}: unexpected argument "${rest[max]}"`);
    };
    switch (command) {
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
      case 'serve':
        expectArgs(0);
        return await serveCommand(
          { listen: values.listen, dataDir: values['data-dir'], driver: values.driver, roles: values.roles, desired: values.desired, tokenFile: values['token-file'], logLevel: values['log-level'] },
          output,
        );
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
