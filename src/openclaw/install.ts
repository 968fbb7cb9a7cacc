import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import type { Clock } from '../common/clock.ts';
import { findOpenClaw, installPaths, readInstallStamp, type InstallStamp, type OpenClawInstall } from './install-location.ts';
import { NODE_PACKAGE, NODE_VERSION, OPENCLAW_VERSION } from './versions.ts';

/**
 * Installs the pinned OpenClaw and a Node 24 from the npm registry into a cache directory, with
 * the system's own npm. Idempotent: the stamp file, written last, records the versions, and a
 * run that finds a whole install of those versions does nothing.
 */

export interface InstallOptions {
  dir: string;
  clock: Clock;
  /** One line of progress (the CLI writes it to stderr). */
  progress: (line: string) => void;
  /** npm's own output; defaults to being passed to progress line by line. */
  npmOutput?: (chunk: string) => void;
  env?: NodeJS.ProcessEnv;
}

export interface InstallResult extends OpenClawInstall {
  node_version: string;
  /** false: a whole install of these versions was already there and nothing ran. */
  installed: boolean;
  duration_ms: number;
}

export class OpenClawInstallError extends Error {
  override readonly name = 'OpenClawInstallError';
}

async function npmInstall(dir: string, spec: string, options: InstallOptions, path: string): Promise<void> {
  const child = execa('npm', ['install', spec, '--save-exact', '--no-fund', '--no-audit'], {
    cwd: dir,
    env: { ...(options.env ?? process.env), PATH: path },
    all: true,
    reject: false,
    stdin: 'ignore',
  });
  const forward = options.npmOutput ?? ((chunk: string) => chunk.split('\n').filter(Boolean).forEach((line) => options.progress(`  npm: ${line}`)));
  child.all?.on('data', (data: Buffer) => forward(data.toString()));
  const result = await child;
  if (result.exitCode !== 0) {
    throw new OpenClawInstallError(`npm install ${spec} in ${dir} failed with exit code ${result.exitCode ?? result.signal}; check that the npm registry is reachable, then run \`npm run openclaw:install\` again`);
  }
}

export async function installOpenClaw(options: InstallOptions): Promise<InstallResult> {
  const started = options.clock.now();
  const existing = findOpenClaw({ dir: options.dir });
  if (existing !== null) {
    options.progress(`OpenClaw ${OPENCLAW_VERSION} with Node ${NODE_VERSION} is already installed in ${options.dir}`);
    return { ...existing, node_version: NODE_VERSION, installed: false, duration_ms: options.clock.now() - started };
  }
  const paths = installPaths(options.dir);
  mkdirSync(options.dir, { recursive: true });
  // A stale or partial install is finished in place; the stamp goes only after both packages are in.
  rmSync(paths.stamp, { force: true });
  writeFileSync(join(options.dir, 'package.json'), `${JSON.stringify({ name: 'mvm-actors-openclaw-cache', private: true, description: 'Installed by `mvm-actors openclaw install`; not part of any project.' }, null, 2)}\n`);

  const basePath = (options.env ?? process.env).PATH ?? '';
  options.progress(`[1/2] ${NODE_PACKAGE}@${NODE_VERSION} (Node 24: OpenClaw exits on older Node) into ${options.dir}`);
  await npmInstall(options.dir, `${NODE_PACKAGE}@${NODE_VERSION}`, options, basePath);
  // OpenClaw is installed under Node 24 so npm checks its engines against the Node that will run it.
  options.progress(`[2/2] openclaw@${OPENCLAW_VERSION} (about 650 MB, a minute or more on a cold npm cache)`);
  await npmInstall(options.dir, `openclaw@${OPENCLAW_VERSION}`, options, `${dirname(paths.node)}:${basePath}`);

  const version = await execa(paths.node, [paths.entry, '--version'], { reject: false, env: { ...(options.env ?? process.env), OPENCLAW_NO_AUTO_UPDATE: '1', OPENCLAW_OFFLINE: '1' } });
  if (version.exitCode !== 0 || !version.stdout.includes(OPENCLAW_VERSION)) {
    throw new OpenClawInstallError(`the installed OpenClaw did not report version ${OPENCLAW_VERSION} (exit ${version.exitCode}: ${(version.stdout || version.stderr).slice(0, 300)}); remove ${options.dir} and run \`npm run openclaw:install\` again`);
  }
  const stamp: InstallStamp = { openclaw: OPENCLAW_VERSION, node: NODE_VERSION, node_package: NODE_PACKAGE };
  writeFileSync(paths.stamp, `${JSON.stringify(stamp, null, 2)}\n`);
  if (readInstallStamp(options.dir) === null) throw new OpenClawInstallError(`could not write the install stamp ${paths.stamp}`);
  options.progress(`installed OpenClaw ${OPENCLAW_VERSION} with Node ${NODE_VERSION} in ${options.dir}`);
  return { node: paths.node, entry: paths.entry, version: OPENCLAW_VERSION, dir: options.dir, node_version: NODE_VERSION, installed: true, duration_ms: options.clock.now() - started };
}
