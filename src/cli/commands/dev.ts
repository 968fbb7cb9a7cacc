import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { holdProcessOpen, systemClock } from '../../common/clock.ts';
import { findLoopbackConflicts } from '../../driver/sim/loopback-conflicts.ts';
import { createSimDriver, type SimDriver } from '../../driver/sim/sim-driver.ts';
import { createHost, type Host } from '../../host/host.ts';
import { createServer } from '../../server/create-server.ts';
import { loadOrCreateToken, tokenFileFor } from '../../server/token.ts';
import { defaultDataDir, serverFileFor } from '../data-dir.ts';
import { EXIT, UsageError, type Output } from '../output.ts';
import { readJsonFile } from '../read-json-file.ts';

export interface DevOptions {
  tenants: number;
  desired?: string | undefined;
  stateDir?: string | undefined;
  listen: string;
  down: boolean;
  /** Run the real OpenClaw gateway and node hosts (root and `npm run openclaw:install` needed). */
  openclaw?: boolean;
}

/**
 * The example fleet: per tenant a gateway, two workers and a builder job. Tenant i gets net id
 * `firstNetId + i` and a /24 from `subnetBase` (its third octet counts tenants), so tests can put
 * a fleet where it collides with nothing else.
 */
export function exampleFleet(tenants: number, network: { firstNetId?: number; subnetBase?: [number, number]; nodeId?: string } = {}) {
  const firstNetId = network.firstNetId ?? 1;
  const [a, b] = network.subnetBase ?? [10, 200];
  const pool = (pool_id: string, role: string, profile: string, running: number, resources: { vcpus: number; mem_mib: number; data_disk_mib: number }) => ({
    pool_id,
    role,
    profile,
    revision: { artifacts: `${role}-dev`, config_version: 1, secrets_epoch: 0 },
    resources,
    desired_counts: { running, warm: 0, sleeping: 0 },
  });
  return {
    schema_version: 1,
    node_id: network.nodeId ?? 'dev-laptop',
    generation: 1,
    tenants: Array.from({ length: tenants }, (_, i) => ({
      tenant_id: `tenant-${i + 1}`,
      tenant_net_id: firstNetId + i,
      ipv4_subnet: `${a}.${b + Math.floor(i / 256)}.${i % 256}.0/24`,
      pools: [
        pool('gateway', 'gateway', 'openclaw-gateway', 1, { vcpus: 2, mem_mib: 2048, data_disk_mib: 1024 }),
        pool('workers', 'worker', 'openclaw-worker', 2, { vcpus: 1, mem_mib: 1024, data_disk_mib: 1024 }),
        pool('builds', 'builder', 'minimal', 1, { vcpus: 1, mem_mib: 256, data_disk_mib: 512 }),
      ],
    })),
  };
}

/** The tenants' subnets as the document gives them (it is validated later, by apply). */
function tenantSubnets(document: unknown): { tenant_id: string; ipv4_subnet: string }[] {
  const tenants = (document as { tenants?: unknown } | null)?.tenants;
  if (!Array.isArray(tenants)) return [];
  return tenants.filter((t): t is { tenant_id: string; ipv4_subnet: string } => typeof t?.tenant_id === 'string' && typeof t?.ipv4_subnet === 'string');
}

/**
 * Simulated services listen on 127.a.b.c for tenant address 10.a.b.c, so two fleets on one
 * machine with the same subnets collide. Refuse before starting anything, naming the other fleet.
 */
function loopbackCollision(stateDir: string, document: unknown): string | null {
  const conflicts = findLoopbackConflicts(path.join(stateDir, 'sim'), tenantSubnets(document));
  if (conflicts.length === 0) return null;
  const lines = [...new Map(conflicts.map((c) => [c.tenant_id, c])).values()].map((c) => {
    const otherStateDir = path.dirname(path.dirname(path.dirname(c.vm_dir)));
    return `  ✖ ${c.tenant_id}: tenants[].ipv4_subnet ${c.ipv4_subnet} maps to loopback addresses another simulated fleet uses (${c.loopback}, VM ${path.basename(c.vm_dir)} of state dir ${otherStateDir})`;
  });
  const others = [...new Set(conflicts.map((c) => path.dirname(path.dirname(path.dirname(c.vm_dir)))))];
  return [
    'two simulated fleets on one machine need different tenant subnets (10.a.b.c listens on 127.a.b.c):',
    ...lines,
    `fix: stop the other fleet (${others.map((d) => `mvm-actors dev --down --state-dir ${d}`).join('; ')}), or run this one with --desired FILE giving other tenants[].ipv4_subnet values`,
  ].join('\n');
}

/** One line on how tenants are kept apart on this machine. */
function isolationLine(driver: SimDriver): string {
  if (driver.isolation) return `tenant isolation: each tenant's VMs run as uid and gid ${driver.isolation.uidBase} + tenant_net_id, owning their data and secrets drives (0700); config drives are read-only to them`;
  return `tenant isolation: paths only (not running as root): every simulated VM runs as uid ${process.getuid?.() ?? '?'}, tenants' drives are separate directories, not separate owners`;
}

const SETTLED = new Set(['running', 'warm', 'sleeping', 'refused', 'failed', 'stopped', 'destroyed']);

function summary(host: Host): { total: number; settled: number; byStatus: Record<string, number> } {
  const byStatus: Record<string, number> = {};
  let settled = 0;
  const instances = host.instances();
  for (const i of instances) {
    byStatus[i.status] = (byStatus[i.status] ?? 0) + 1;
    if (SETTLED.has(i.status)) settled++;
  }
  return { total: instances.length, settled, byStatus };
}

/**
 * `mvm-actors dev`: a single-host simulation of the fleet on this machine: `serve` with the
 * simulation driver (every microVM a real process tree with the guest agent and its role's
 * services, simulated) and an example desired state. Shows progress until the fleet is up, prints
 * the visualizer URL and a status table, and runs until Ctrl-C, which stops the control plane
 * only; `mvm-actors dev --down` stops the simulated VMs (their data stays in the state dir).
 */
export async function devCommand(options: DevOptions, output: Output): Promise<number> {
  if (!Number.isInteger(options.tenants) || options.tenants < 1 || options.tenants > 200) throw new UsageError('--tenants must be a whole number from 1 to 200');
  const stateDir = path.resolve(options.stateDir ?? path.join(defaultDataDir(), 'dev'));
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const driver = createSimDriver({ stateDir: path.join(stateDir, 'sim'), clock: systemClock, openclaw: options.openclaw ? 'require' : 'off' });

  if (options.down) {
    const release = holdProcessOpen(); // stop waits out its grace period on the clock
    const vms = (await driver.describe()).filter((vm) => vm.state === 'running' || vm.state === 'paused');
    for (const vm of vms) await driver.stop(vm.instance_id, { signal: new AbortController().signal, deadline: systemClock.now() + 30_000 });
    driver.close();
    release();
    output.out(`stopped ${vms.length} simulated VM(s); their data stays in ${stateDir}`);
    return EXIT.ok;
  }

  const document = options.desired ? await readJsonFile(options.desired) : exampleFleet(options.tenants);
  const collision = loopbackCollision(stateDir, document);
  if (collision) {
    driver.close();
    output.err(collision);
    return EXIT.invalid;
  }
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const host = await createHost({ dataDir: stateDir, driver, logger, clock: systemClock });
  const result = await host.apply(document);
  if (!result.applied && !result.refusal?.startsWith('stale-generation')) {
    await host.close();
    driver.close();
    output.err(`the desired state was not applied (${result.refusal}):\n${result.issues.map((i) => `  ✖ ${i.path}: ${i.message}`).join('\n')}`);
    return EXIT.invalid;
  }
  const token = loadOrCreateToken(tokenFileFor(stateDir));
  const app = await createServer(host, { token });
  const [bindHost, port] = options.listen.split(':');
  await app.listen({ host: bindHost!, port: Number(port) });
  const address = app.server.address();
  const url = `http://${bindHost}:${typeof address === 'object' && address ? address.port : port}`;
  writeFileSync(serverFileFor(stateDir), `${JSON.stringify({ url, pid: process.pid, token_file: tokenFileFor(stateDir) })}\n`, { mode: 0o600 });
  output.out(`mvm-actors dev: state in ${stateDir}; API on ${url}`);

  // Progress until every instance has settled (each VM is a real process: a few seconds).
  await new Promise<void>((resolve) => {
    let last = '';
    const tick = () => {
      const s = summary(host);
      const line = `  ${s.settled}/${s.total} settled: ${Object.entries(s.byStatus).map(([k, v]) => `${v} ${k}`).join(', ')}`;
      if (line !== last) output.out(line);
      last = line;
      // Up when nothing is in the middle of an effect: instances waiting on a gateway that failed
      // would otherwise keep the fleet "coming up" forever; the table below says what is wrong.
      if (s.total > 0 && host.isSettled() && !s.byStatus.pending) resolve();
      else systemClock.setTimeout(tick, 250);
    };
    tick();
  });
  const broken = host.instances().filter((i) => i.status === 'failed' || i.status === 'refused');
  output.out(broken.length === 0 ? 'fleet up' : `fleet up, with ${broken.length} instance(s) failed or refused (see REASON; the VM logs are in ${path.join(stateDir, 'sim', 'vms')})`);
  output.out(`visualizer: ${url}/viz?token=${token}`);
  output.out(`CLI:        npx mvm-actors status --data-dir ${stateDir}`);
  const rows = host.instances().map((i) => [i.instance_id, i.role, i.status, i.network.ipv4, i.status_reason ?? '']);
  const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c]!.length), ['INSTANCE', 'ROLE', 'STATUS', 'IP'][c]!.length));
  const fmt = (r: string[]) => r.map((v, c) => (c < 4 ? v.padEnd(widths[c]!) : v)).join('  ').trimEnd();
  output.out([fmt(['INSTANCE', 'ROLE', 'STATUS', 'IP', 'REASON']), ...rows.map(fmt)].join('\n'));
  // Say which services are real (--openclaw) and which are stand-ins.
  const simulated = new Set<string>();
  const real = new Set<string>();
  for (const instance of host.instances()) {
    const services = (await driver.simulatedServices(instance.instance_id)) as { simulated?: { service: string; port: number }[]; real?: { service: string }[] } | null;
    const listening = new Map((services?.simulated ?? []).map((s) => [s.service, s.port]));
    const realNames = new Set((services?.real ?? []).map((s) => s.service));
    for (const service of host.catalog.roles.get(instance.role)?.manifest.services ?? []) {
      const port = listening.get(service.name);
      if (realNames.has(service.name)) real.add(`${instance.role}: ${service.name} (${service.program} ${driver.openclaw?.version ?? ''}, real)`);
      else simulated.add(`${instance.role}: ${service.name} (${service.program}, simulated${port ? ` on :${port}` : ''})`);
    }
  }
  if (real.size > 0) output.out(`real services: ${[...real].sort().join('; ')}`);
  output.out(`simulated services: ${[...simulated].sort().join('; ') || 'none'}`);
  output.out(isolationLine(driver));
  output.out('Ctrl-C stops the control plane (the VMs keep running); `mvm-actors dev --down` stops the VMs');

  return new Promise<number>((resolve) => {
    const stop = () => {
      void (async () => {
        await app.close();
        await host.close();
        driver.close();
        rmSync(serverFileFor(stateDir), { force: true });
        output.out('control plane stopped; the simulated VMs keep running (mvm-actors dev --down stops them)');
        resolve(EXIT.ok);
      })();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
