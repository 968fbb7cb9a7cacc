import { systemClock } from '../../common/clock.ts';
import { installOpenClaw, OpenClawInstallError } from '../../openclaw/install.ts';
import { defaultOpenClawDir, findOpenClaw } from '../../openclaw/install-location.ts';
import { NODE_VERSION, OPENCLAW_VERSION } from '../../openclaw/versions.ts';
import { EXIT, printJson, UsageError, type Output } from '../output.ts';

export interface OpenClawCommandOptions {
  args: string[];
  dir?: string | undefined;
  json: boolean;
}

/**
 * `mvm-actors openclaw install|status`: the pinned OpenClaw and Node 24 in a cache directory
 * outside the project. Progress goes to stderr so `--json` output on stdout stays parseable.
 */
export async function openclawCommand(options: OpenClawCommandOptions, output: Output): Promise<number> {
  const [sub, ...extra] = options.args;
  if (extra.length > 0) throw new UsageError(`openclaw ${sub}: unexpected argument "${extra[0]}"`);
  const dir = options.dir ?? defaultOpenClawDir();
  switch (sub) {
    case 'install': {
      try {
        const result = await installOpenClaw({ dir, clock: systemClock, progress: (line) => output.err(line) });
        if (options.json) printJson(output, result);
        else output.out(`${result.installed ? 'installed' : 'already installed'}: OpenClaw ${result.version}, Node ${result.node_version}\n  node:  ${result.node}\n  entry: ${result.entry}`);
        return EXIT.ok;
      } catch (error) {
        if (error instanceof OpenClawInstallError) {
          output.err(`mvm-actors: ${error.message}`);
          return EXIT.usage;
        }
        throw error;
      }
    }
    case 'status': {
      const found = findOpenClaw({ dir });
      if (options.json) printJson(output, found === null ? { installed: false, dir, version: OPENCLAW_VERSION, node_version: NODE_VERSION } : { installed: true, ...found, node_version: NODE_VERSION });
      else if (found === null) output.out(`OpenClaw ${OPENCLAW_VERSION} is not installed in ${dir}; run \`npm run openclaw:install\``);
      else output.out(`OpenClaw ${found.version} with Node ${NODE_VERSION} in ${found.dir}\n  node:  ${found.node}\n  entry: ${found.entry}`);
      return found === null ? EXIT.invalid : EXIT.ok;
    }
    case undefined:
      throw new UsageError('openclaw: give a subcommand: `install` or `status`');
    default:
      throw new UsageError(`openclaw: unknown subcommand "${sub}"; use \`install\` or \`status\``);
  }
}
