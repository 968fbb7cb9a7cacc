import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pino, type Level } from 'pino';
import { systemClock } from '../../common/clock.ts';
import { ArtifactStore } from '../../bundle/artifact-store.ts';
import { createFakeDriver } from '../../driver/fake-driver.ts';
import { createFirecrackerDriver } from '../../driver/firecracker/firecracker-driver.ts';
import { createSimDriver } from '../../driver/sim/sim-driver.ts';
import type { VmmDriver } from '../../driver/vmm-driver.ts';
import { createHost } from '../../host/host.ts';
import { buildFilesImage, ensureDataImage } from '../../firecracker/drive-images.ts';
import { createServer } from '../../server/create-server.ts';
import { loadOrCreateToken, readToken, tokenFileFor } from '../../server/token.ts';
import { defaultDataDir, serverFileFor } from '../data-dir.ts';
import { EXIT, UsageError, type Output } from '../output.ts';
import { readJsonFile } from '../read-json-file.ts';

export interface ServeOptions {
  listen: string;
  dataDir?: string | undefined;
  driver: string;
  roles?: string | undefined;
  desired?: string | undefined;
  tokenFile?: string | undefined;
  logLevel: string;
  /** `--driver firecracker`: the firecracker binary, the jailer (not supported yet) and the artifact store. */
  firecrackerBin?: string | undefined;
  jailerBin?: string | undefined;
  artifactsDir?: string | undefined;
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function parseListen(listen: string): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(listen);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65_535) throw new UsageError(`--listen ${listen}: expected HOST:PORT, for example 127.0.0.1:7070`);
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

/**
 * The VMM driver for `--driver`: `sim` runs each VM as real processes under <data-dir>/sim (they
 * outlive serve); `fake` keeps its in-memory "VMs" in a file, so restarting serve leaves them too.
 */
export function makeDriver(kind: string, dataDir: string, firecracker: Pick<ServeOptions, 'firecrackerBin' | 'jailerBin' | 'artifactsDir'> = {}): VmmDriver {
  if (kind === 'sim') return createSimDriver({ stateDir: path.join(dataDir, 'sim'), clock: systemClock });
  if (kind === 'firecracker') {
    if (!firecracker.firecrackerBin) throw new UsageError('--driver firecracker needs --firecracker-bin PATH (the firecracker binary)');
    if (firecracker.jailerBin) throw new UsageError('--jailer-bin: the Firecracker driver does not run VMs under the jailer yet; leave it out to run firecracker directly');
    return createFirecrackerDriver({
      stateDir: path.join(dataDir, 'firecracker'),
      clock: systemClock,
      firecrackerBin: path.resolve(firecracker.firecrackerBin),
      artifacts: new ArtifactStore(path.resolve(firecracker.artifactsDir ?? path.join(dataDir, 'artifacts'))),
      images: { buildFilesImage, ensureDataImage },
    });
  }
  return createFakeDriver({ clock: systemClock, stateFile: path.join(dataDir, 'fake-hypervisor.json') });
}

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || /^127\./.test(host);

/**
 * `mvm-actors serve`: the long-running host process. Restores every actor from the data dir,
 * adopts what the driver reports, serves the API, and on SIGTERM or SIGINT stops accepting,
 * finishes in-flight requests, flushes LMDB and exits. It never stops tenant VMs on the way out.
 */
export async function serveCommand(options: ServeOptions, output: Output): Promise<number> {
  const { host: bindHost, port } = parseListen(options.listen);
  if (!isLoopback(bindHost) && !options.tokenFile) {
    throw new UsageError(`serve: binding to ${bindHost} exposes the API beyond this machine; give --token-file with a token you chose (mode 0600)`);
  }
  if (!LEVELS.includes(options.logLevel)) throw new UsageError(`--log-level ${options.logLevel}: choose one of ${LEVELS.join(', ')}`);
  if (options.driver !== 'fake' && options.driver !== 'sim' && options.driver !== 'firecracker') {
    throw new UsageError(`--driver ${options.driver}: choose firecracker, sim or fake`);
  }
  const dataDir = path.resolve(options.dataDir ?? defaultDataDir());
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const token = options.tokenFile ? readToken(options.tokenFile) : loadOrCreateToken(tokenFileFor(dataDir));

  // Structured JSON lines on stderr (stdout is for the CLI's own output); readable lines when a
  // person is watching the terminal.
  const logger = pino(
    { level: options.logLevel as Level, base: { component: 'mvm-actors' } },
    process.stderr.isTTY ? pino.transport({ target: 'pino-pretty', options: { destination: 2, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,component' } }) : pino.destination(2),
  );
  const driver = makeDriver(options.driver, dataDir, options);
  const host = await createHost({ dataDir, driver, logger, clock: systemClock, ...(options.roles ? { roles: options.roles } : {}) });
  if (options.desired) {
    const result = await host.apply(await readJsonFile(options.desired));
    if (!result.applied) logger.error({ refusal: result.refusal, issues: result.issues }, 'desired state at start not applied');
  }
  const app = await createServer(host, { token, logger });
  await app.listen({ host: bindHost, port });
  const address = app.server.address();
  const actualPort = typeof address === 'object' && address ? address.port : port;
  const url = `http://${bindHost.includes(':') ? `[${bindHost}]` : bindHost}:${actualPort}`;
  writeFileSync(serverFileFor(dataDir), `${JSON.stringify({ url, pid: process.pid, token_file: options.tokenFile ?? tokenFileFor(dataDir) })}\n`, { mode: 0o600 });
  logger.info({ url, dataDir, instances: host.instances().length, generation: host.generation }, 'serving');
  output.out(`mvm-actors serving on ${url} (data dir ${dataDir}; token in ${options.tokenFile ?? tokenFileFor(dataDir)})`);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping: no new requests, finishing in-flight work');
      void (async () => {
        try {
          await app.close();
          await host.close();
          (driver as { close?: () => void }).close?.(); // stops watching the VMs; they keep running
          rmSync(serverFileFor(dataDir), { force: true });
          logger.info('stopped; VMs left running');
          resolve(EXIT.ok);
        } catch (error) {
          logger.error({ err: error }, 'stopping failed');
          resolve(EXIT.usage);
        }
      })();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
