import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pino, type Level } from 'pino';
import { systemClock } from '../../common/clock.ts';
import { ArtifactStore } from '../../bundle/artifact-store.ts';
import { createFakeDriver } from '../../driver/fake-driver.ts';
import { createFirecrackerDriver, type TapManager } from '../../driver/firecracker/firecracker-driver.ts';
import { HostNetworkSync, TenantLookup } from '../../driver/firecracker/tenant-networking.ts';
import { createSimDriver } from '../../driver/sim/sim-driver.ts';
import type { VmmDriver } from '../../driver/vmm-driver.ts';
import { createHost, type ApplyResult, type Host } from '../../host/host.ts';
import { HostNetwork } from '../../net/host-network.ts';
import { NetOptions } from '../../net/nft-ruleset.ts';
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
  /** `--driver firecracker`: the firecracker binary, the jailer and its chroot base, and the artifact store. */
  firecrackerBin?: string | undefined;
  jailerBin?: string | undefined;
  chrootBase?: string | undefined;
  artifactsDir?: string | undefined;
  /**
   * `--network host` (default with --driver firecracker): serve creates each tenant's bridge and
   * each instance's tap and applies the nftables ruleset after every apply. `--network none`:
   * the operator provides both (e.g. with `mvm-actors net apply`); taps must exist before boot.
   */
  network?: string | undefined;
  /** Same as `net --ingress-port-base`: tenant ingress listens on base + tenant_net_id. */
  ingressPortBase?: string | undefined;
  /** `--driver sim --openclaw`: run the real OpenClaw gateway and node hosts (root and the pinned install needed). */
  openclaw?: boolean | undefined;
}

/** What `--driver firecracker` needs from serve's tenant networking. */
export interface FirecrackerNetworking {
  tenants: TenantLookup;
  taps: TapManager | undefined;
}

/** Where jailed VMs get their chroots when --chroot-base is not given. */
export const DEFAULT_CHROOT_BASE = '/srv/jailer';

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
export function makeDriver(
  kind: string,
  dataDir: string,
  firecracker: Pick<ServeOptions, 'firecrackerBin' | 'jailerBin' | 'chrootBase' | 'artifactsDir' | 'openclaw'> = {},
  networking: FirecrackerNetworking = { tenants: new TenantLookup(), taps: undefined },
): VmmDriver {
  if (kind === 'sim') return createSimDriver({ stateDir: path.join(dataDir, 'sim'), clock: systemClock, openclaw: firecracker.openclaw ? 'require' : 'off' });
  if (kind === 'firecracker') {
    if (!firecracker.firecrackerBin) throw new UsageError('--driver firecracker needs --firecracker-bin PATH (the firecracker binary)');
    if (firecracker.chrootBase && !firecracker.jailerBin) throw new UsageError('--chroot-base is for the jailer; give --jailer-bin PATH too, or leave --chroot-base out');
    return createFirecrackerDriver({
      stateDir: path.join(dataDir, 'firecracker'),
      clock: systemClock,
      firecrackerBin: path.resolve(firecracker.firecrackerBin),
      artifacts: new ArtifactStore(path.resolve(firecracker.artifactsDir ?? path.join(dataDir, 'artifacts'))),
      images: { buildFilesImage, ensureDataImage },
      ...(networking.taps ? { taps: networking.taps } : {}),
      // Until the host builds specs with the tenant's gateway and prefix length, take them from the applied desired state.
      guestNetwork: (spec) => networking.tenants.guestNetwork(spec),
      ...(firecracker.jailerBin ? { jailer: { jailerBin: path.resolve(firecracker.jailerBin), chrootBase: path.resolve(firecracker.chrootBase ?? DEFAULT_CHROOT_BASE) } } : {}),
    });
  }
  return createFakeDriver({ clock: systemClock, stateFile: path.join(dataDir, 'fake-hypervisor.json') });
}

/**
 * Every successful apply, through the API or --desired, is followed by a network sync before it
 * answers; a sync failure is added to the apply's issues (path `network`), so the caller sees it,
 * while the applied desired state stands. The host has no post-apply hook, so serve wraps its
 * apply on this one instance.
 */
function withNetworkSync(host: Host, sync: HostNetworkSync): void {
  const apply = host.apply.bind(host);
  host.apply = async (document: unknown): Promise<ApplyResult> => {
    const result = await apply(document);
    if (!result.applied) return result;
    const status = await sync.sync();
    if (status.state !== 'failed') return result;
    return {
      ...result,
      issues: [
        ...result.issues,
        { path: 'network', segments: ['network'], message: `desired state applied, but the host network sync failed: ${status.error}`, code: 'network-sync-failed', hint: 'fix the cause and apply again, or run `mvm-actors net apply`' },
      ],
    };
  };
  // Ingress targets follow the instances: re-sync when one is created or destroyed.
  host.subscribe((event) => {
    if (event.type === 'transition' && (event.from === null || event.to === 'destroyed')) void sync.sync();
  });
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
  const networkMode = options.network ?? (options.driver === 'firecracker' ? 'host' : 'none');
  if (networkMode !== 'host' && networkMode !== 'none') throw new UsageError(`--network ${networkMode}: choose host (serve manages bridges, taps and nftables) or none (the operator does)`);
  if (networkMode === 'host' && options.driver !== 'firecracker') throw new UsageError(`--network host: only --driver firecracker uses host networking; leave --network out with --driver ${options.driver}`);
  if (networkMode === 'host' && process.getuid?.() !== 0) throw new UsageError('--driver firecracker manages bridges, taps and nftables, which needs root; run serve as root, or pass --network none and set up the network yourself (`mvm-actors net apply`)');
  if (options.ingressPortBase !== undefined && !/^\d{1,5}$/.test(options.ingressPortBase)) throw new UsageError(`--ingress-port-base ${options.ingressPortBase}: expected a port number`);
  // The ruleset protects the port serve listens on; with port 0 it is known only after listen,
  // so the options are completed then (no sync runs before).
  const netOptions: { controlPorts: number[]; ingressPortBase?: number } = { controlPorts: [port], ...(options.ingressPortBase !== undefined ? { ingressPortBase: Number(options.ingressPortBase) } : {}) };
  const checked = NetOptions.safeParse({ ...netOptions, controlPorts: [port || 1] });
  if (!checked.success) throw new UsageError(checked.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  const dataDir = path.resolve(options.dataDir ?? defaultDataDir());
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const token = options.tokenFile ? readToken(options.tokenFile) : loadOrCreateToken(tokenFileFor(dataDir));

  // Structured JSON lines on stderr (stdout is for the CLI's own output); readable lines when a
  // person is watching the terminal.
  const logger = pino(
    { level: options.logLevel as Level, base: { component: 'mvm-actors' } },
    process.stderr.isTTY ? pino.transport({ target: 'pino-pretty', options: { destination: 2, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,component' } }) : pino.destination(2),
  );
  const tenants = new TenantLookup();
  const networkSync =
    networkMode === 'host' ? new HostNetworkSync({ network: new HostNetwork(), tenants, netOptions, clock: systemClock, log: logger.child({ part: 'host-network' }) }) : null;
  const driver = makeDriver(options.driver, dataDir, options, { tenants, taps: networkSync ?? undefined });
  const host = await createHost({ dataDir, driver, logger, clock: systemClock, ...(options.roles ? { roles: options.roles } : {}) });
  tenants.bind(host);
  networkSync?.bind(host);
  if (options.desired) {
    const result = await host.apply(await readJsonFile(options.desired));
    if (!result.applied) logger.error({ refusal: result.refusal, issues: result.issues }, 'desired state at start not applied');
  }
  // Every apply through the API syncs the network before it answers (enabled once listening).
  if (networkSync) withNetworkSync(host, networkSync);
  const app = await createServer(host, { token, logger });
  await app.listen({ host: bindHost, port });
  const address = app.server.address();
  const actualPort = typeof address === 'object' && address ? address.port : port;
  if (networkSync) {
    netOptions.controlPorts = [actualPort];
    networkSync.enable();
    // Bridges and the ruleset for what was restored (and --desired): VMs adopted after a restart keep their network.
    await networkSync.sync();
  }
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
