import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../src/bundle/artifact-store.ts';
import { fixtureBundle } from '../bundle/bundle-fixture.ts';
import { killFakes, writeFakeFirecrackerBin } from '../firecracker/fake-harness.ts';
import type { FakeCall } from '../firecracker/fake-firecracker.ts';
import { CLI, REPO_ROOT } from '../helpers/fixtures.ts';
import { assertTools, Lab } from './netns.ts';

/**
 * `mvm-actors serve --driver firecracker` as a production host would run it, as root, inside a
 * throwaway network namespace (the serve child runs under `ip netns exec`, so the machine's own
 * links and nftables are never touched). Firecracker is the spec-enforcing fake, whose guest agent
 * answers readiness for the gateway's port; a TCP listener in the namespace stands in for the
 * gateway service. Every CLI call goes through the namespace too: serve's loopback is its own.
 */

const ENV = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('MVM_ACTORS_')));
const LISTEN = '127.0.0.1:7070';
/** Tenant net id 50's ingress port (base + 50) is the API port: a ruleset that must be refused. */
const INGRESS_BASE = 7020;
const GATEWAY_PORT = 18789;
/**
 * The stand-in gateway service: answers 200 to any HTTP request on the gateway's port (an HTTP
 * readiness probe), and ignores resets and non-HTTP bytes (a TCP probe connects and closes at
 * once; an unhandled socket error would end the service).
 */
const SERVICE = `
const http = require('node:http');
const server = http.createServer((req, res) => res.end('ok'));
server.on('clientError', (error, socket) => socket.destroy());
server.listen(Number(process.argv[1]), '127.0.0.1', () => console.log('listening'));
`;

interface InstanceJson {
  instance_id: string;
  tenant_id: string;
  status: string;
  status_reason: string | null;
  network: { ipv4: string; tap: string };
}

const gatewayPool = (ingress = false) => ({
  pool_id: 'gateway',
  profile: 'openclaw-gateway',
  role: 'gateway',
  revision: { artifacts: 'gateway-b1', config_version: 1, secrets_epoch: 1 },
  resources: { vcpus: 1, mem_mib: 1536, data_disk_mib: 1024 },
  desired_counts: { running: 1, warm: 0, sleeping: 0 },
  ...(ingress ? { ingress: { enabled: true } } : {}),
});
const tenant = (tenant_id: string, tenant_net_id: number, ipv4_subnet: string, ingress = false) => ({ tenant_id, tenant_net_id, ipv4_subnet, pools: [gatewayPool(ingress)] });
const ALPHA = tenant('alpha', 11, '10.11.0.0/20');
const BETA = tenant('beta', 12, '10.12.0.32/27');
const desired = (generation: number, tenants: unknown[]) => ({ schema_version: 1, node_id: 'kvm-test', generation, tenants });

/**
 * A namespace, the imported gateway bundle, the stand-in gateway service and a serve child with
 * `serveArgs`; every call it offers runs inside the namespace. Registers its own beforeAll/afterAll.
 */
function serveRig(name: string, serveArgs: string[]) {
  const lab = new Lab();
  const rig = {
    ns: '',
    dir: '',
    dataDir: '',
    callLog: '',
    serve: null as ResultPromise | null,
    gatewayService: null as ResultPromise | null,
    serveErr: '',
    lastSeen: null as unknown,
    inNs: (args: string[]) => execa('ip', ['netns', 'exec', rig.ns, ...args], { reject: false, cwd: REPO_ROOT, env: ENV, extendEnv: false, stdin: 'ignore' }),
    mvm: (args: string[]) => rig.inNs(['node', CLI, ...args, '--data-dir', rig.dataDir]),
    links: async (): Promise<{ ifname: string; master?: string; operstate: string }[]> => JSON.parse(String((await rig.inNs(['ip', '-j', 'link', 'show'])).stdout)) as never,
    instances: async (): Promise<InstanceJson[]> => {
      const result = await rig.mvm(['instances', '--json']);
      if (result.exitCode !== 0) throw new Error(`instances: ${String(result.stderr)}`);
      return (JSON.parse(String(result.stdout)) as { instances: InstanceJson[] }).instances;
    },
    apply: async (document: unknown) => {
      const file = path.join(rig.dir, `desired-${(document as { generation: number }).generation}.json`);
      writeFileSync(file, JSON.stringify(document));
      const result = await rig.mvm(['apply', file, '--json']);
      return { exitCode: result.exitCode, reply: JSON.parse(String(result.stdout)) as { applied: boolean; generation: number; issues: { path: string; code?: string; message: string }[] } };
    },
    bootArgs: (): string[] =>
      readFileSync(rig.callLog, 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as FakeCall)
        .filter((c) => c.path === '/boot-source')
        .map((c) => (c.body as { boot_args: string }).boot_args),
    async waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const value = await probe();
        if (value !== undefined && value !== false) return value;
        if (performance.now() > deadline) throw new Error(`timed out waiting for ${what} (last seen: ${JSON.stringify(rig.lastSeen)}); serve stderr: ${rig.serveErr.slice(-3000)}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    },
    firecrackerBin: '',
    /** Starts serve on the rig's data dir; resolves once it serves (server.json written). */
    async start(): Promise<void> {
      const serve = execa('ip', ['netns', 'exec', rig.ns, 'node', CLI, 'serve', '--listen', LISTEN, '--data-dir', rig.dataDir, '--driver', 'firecracker', '--firecracker-bin', rig.firecrackerBin, '--log-level', 'warn', ...serveArgs], {
        reject: false,
        cwd: REPO_ROOT,
        env: ENV,
        extendEnv: false,
        stdin: 'ignore',
        buffer: false,
      });
      rig.serve = serve;
      serve.stderr!.on('data', (chunk: Buffer) => (rig.serveErr += chunk.toString('utf8')));
      await rig.waitFor('serve to start', async () => {
        if (serve.exitCode !== null) throw new Error(`serve exited ${serve.exitCode}: ${rig.serveErr}`);
        return existsSync(path.join(rig.dataDir, 'server.json'));
      });
    },
    /** SIGTERM, as an operator restarting the control plane; the VMs keep running. */
    async stop(): Promise<void> {
      rig.serve?.kill('SIGTERM');
      await rig.serve?.catch(() => undefined);
      rig.serve = null;
    },
    async allRunning(count: number): Promise<InstanceJson[]> {
      return rig.waitFor(`${count} instances running`, async () => {
        const list = await rig.instances();
        rig.lastSeen = list.map((i) => [i.instance_id, i.status, i.status_reason]);
        return list.length === count && list.every((i) => i.status === 'running') ? list : undefined;
      });
    },
  };

  beforeAll(async () => {
    await assertTools();
    rig.ns = await lab.addNamespace(name);
    rig.dir = mkdtempSync(path.join(os.tmpdir(), 'mvm-sn-'));
    rig.dataDir = path.join(rig.dir, 'd');
    rig.callLog = path.join(rig.dir, 'calls.jsonl');
    const firecrackerBin = writeFakeFirecrackerBin(rig.dir, rig.callLog);
    // The gateway bundle, imported as an operator would before naming it in a pool revision.
    const bundle = await fixtureBundle();
    await new ArtifactStore(path.join(rig.dataDir, 'artifacts')).import(bundle.dir, { name: 'gateway-b1' });
    // The gateway service inside the "guest": the fake's guest agent probes its port on the namespace's loopback.
    const service = execa('ip', ['netns', 'exec', rig.ns, 'node', '-e', SERVICE, String(GATEWAY_PORT)], { reject: false, buffer: false, stdin: 'ignore' });
    rig.gatewayService = service;
    await new Promise<void>((resolve, reject) => {
      service.stdout!.on('data', (d: Buffer) => (String(d).includes('listening') ? resolve() : undefined));
      void service.then((r) => reject(new Error(`the stand-in gateway service exited: ${String(r.stderr ?? '')}`)));
    });

    rig.firecrackerBin = firecrackerBin;
    await rig.start();
  }, 120_000);

  afterAll(async () => {
    rig.gatewayService?.kill('SIGKILL');
    await rig.gatewayService?.catch(() => undefined);
    if (rig.serve && rig.serve.exitCode === null) {
      rig.serve.kill('SIGTERM');
      await rig.serve.catch(() => undefined);
    }
    if (rig.dataDir) await killFakes(path.join(rig.dataDir, 'firecracker'));
    await lab.cleanup();
    if (rig.dir) rmSync(rig.dir, { recursive: true, force: true });
  }, 60_000);
  return rig;
}

describe('serve --driver firecracker with host networking (as root, in a network namespace)', () => {
  const rig = serveRig('serve', ['--ingress-port-base', String(INGRESS_BASE)]);
  const { inNs, mvm, links, instances, apply } = rig;
  const waitFor = rig.waitFor;

  it('applies two tenants: bridges and taps exist, the guests boot with their tenant gateway and prefix, VMs reach running, net verify finds no drift', async () => {
    const { exitCode, reply } = await apply(desired(1, [ALPHA, BETA]));
    expect(reply.issues).toEqual([]);
    expect(exitCode).toBe(0);

    const running = await rig.allRunning(2);
    const byTenant = Object.fromEntries(running.map((i) => [i.tenant_id, i]));
    expect(byTenant.alpha!.network).toMatchObject({ ipv4: '10.11.0.2', tap: 'mv11-2' });
    expect(byTenant.beta!.network).toMatchObject({ ipv4: '10.12.0.34', tap: 'mv12-2' });

    const now = await links();
    const link = (name: string) => now.find((l) => l.ifname === name);
    expect(link('mvbr11')).toBeDefined();
    expect(link('mvbr12')).toBeDefined();
    expect(link('mv11-2')?.master).toBe('mvbr11');
    expect(link('mv12-2')?.master).toBe('mvbr12');
    const addresses = String((await inNs(['ip', '-4', '-o', 'addr', 'show', 'dev', 'mvbr12'])).stdout);
    expect(addresses).toContain('10.12.0.33/27');

    // Each guest's kernel gets its tenant's gateway and prefix length, not a /24 guess.
    const bootArgs = rig.bootArgs();
    expect(bootArgs.some((a) => a.includes('ip=10.11.0.2::10.11.0.1:255.255.240.0::eth0:off'))).toBe(true);
    expect(bootArgs.some((a) => a.includes('ip=10.12.0.34::10.12.0.33:255.255.255.224::eth0:off'))).toBe(true);

    const verify = await inNs(['node', CLI, 'net', 'verify', '--data-dir', rig.dataDir, '--listen', LISTEN, '--ingress-port-base', String(INGRESS_BASE)]);
    expect(String(verify.stdout)).toContain('matches the generated ruleset');
    expect(verify.exitCode).toBe(0);
    const table = String((await inNs(['nft', 'list', 'table', 'inet', 'mvm'])).stdout);
    expect(table).toContain('chain from_t12');
    expect(table).toMatch(/tcp dport \{?\s*7070\s*\}? drop/);
  }, 120_000);

  it('removing a tenant removes its tap, its bridge and its chains; net verify still finds no drift', async () => {
    const { exitCode, reply } = await apply(desired(2, [ALPHA]));
    expect(reply.issues).toEqual([]);
    expect(exitCode).toBe(0);
    await waitFor('the beta instance destroyed and forgotten', async () => (await instances()).every((i) => i.tenant_id !== 'beta'));
    await waitFor('the beta tap removed', async () => !(await links()).some((l) => l.ifname === 'mv12-2'));
    const now = await links();
    expect(now.some((l) => l.ifname === 'mvbr12')).toBe(false);
    expect(now.find((l) => l.ifname === 'mv11-2')?.master).toBe('mvbr11');
    const table = String((await inNs(['nft', 'list', 'table', 'inet', 'mvm'])).stdout);
    expect(table).not.toContain('from_t12');
    expect(table).toContain('chain from_t11');
    const verify = await inNs(['node', CLI, 'net', 'verify', '--data-dir', rig.dataDir, '--listen', LISTEN, '--ingress-port-base', String(INGRESS_BASE)]);
    expect(verify.exitCode).toBe(0);
  }, 120_000);

  it('a sync failure is named in the apply reply and the desired state stays applied; the next good apply clears it', async () => {
    // Tenant 50's ingress port, 7020 + 50, is the API port: the ruleset cannot be generated.
    const failed = await apply(desired(3, [ALPHA, tenant('gamma', 50, '10.50.0.0/24', true)]));
    expect(failed.reply).toMatchObject({ applied: true, generation: 3 });
    expect(failed.reply.issues).toEqual([expect.objectContaining({ path: 'network', code: 'network-sync-failed' })]);
    expect(failed.reply.issues[0]!.message).toMatch(/tenant "gamma".*control port/);
    expect(failed.exitCode).toBe(1);
    expect(rig.serveErr).toContain('host network sync failed');
    const status = await mvm(['status', '--json']);
    expect(JSON.parse(String(status.stdout))).toMatchObject({ health: { generation: 3 } });

    const fixed = await apply(desired(4, [ALPHA]));
    expect(fixed.reply.issues).toEqual([]);
    expect(fixed.exitCode).toBe(0);
    await waitFor('the gamma instance gone', async () => (await instances()).every((i) => i.tenant_id !== 'gamma'));
    const verify = await inNs(['node', CLI, 'net', 'verify', '--data-dir', rig.dataDir, '--listen', LISTEN, '--ingress-port-base', String(INGRESS_BASE)]);
    expect(verify.exitCode).toBe(0);
  }, 120_000);

  it('a restarted serve adopts the running VMs and restores the ruleset at start (an emptied table is drift it repairs)', async () => {
    const before = await instances();
    const starts = rig.bootArgs().length;
    await rig.stop();
    // While serve is down someone flushes the table (the host must not stay open) and deletes a
    // tenant bridge (its running VM's tap must be attached to the new one, though the VM is adopted).
    expect((await inNs(['nft', 'delete', 'table', 'inet', 'mvm'])).exitCode).toBe(0);
    expect((await inNs(['ip', 'link', 'del', 'dev', 'mvbr11'])).exitCode).toBe(0);
    expect((await links()).find((l) => l.ifname === 'mv11-2')?.master).toBeUndefined();
    await rig.start();
    await waitFor('the restored table', async () => (await inNs(['nft', 'list', 'table', 'inet', 'mvm'])).exitCode === 0);
    const verify = await inNs(['node', CLI, 'net', 'verify', '--data-dir', rig.dataDir, '--listen', LISTEN, '--ingress-port-base', String(INGRESS_BASE)]);
    expect(verify.exitCode).toBe(0);
    const after = await rig.allRunning(before.length);
    expect(after.map((i) => i.instance_id)).toEqual(before.map((i) => i.instance_id));
    // Adopted, not booted again.
    expect(rig.bootArgs().length).toBe(starts);
    expect((await links()).find((l) => l.ifname === 'mv11-2')?.master).toBe('mvbr11');
  }, 120_000);
});

describe('serve --driver firecracker --network none (as root, in a network namespace)', () => {
  const rig = serveRig('none', ['--network', 'none']);

  it('leaves bridges, taps and nftables to the operator; the guests still get their tenant gateway and prefix', async () => {
    const { exitCode, reply } = await rig.apply(desired(1, [BETA]));
    expect(reply.issues).toEqual([]);
    expect(exitCode).toBe(0);
    await rig.allRunning(1);
    const names = (await rig.links()).map((l) => l.ifname);
    expect(names.filter((n) => n.startsWith('mv'))).toEqual([]);
    expect((await rig.inNs(['nft', 'list', 'table', 'inet', 'mvm'])).exitCode).not.toBe(0);
    expect(rig.bootArgs()).toEqual([expect.stringContaining('ip=10.12.0.34::10.12.0.33:255.255.255.224::eth0:off')]);
  }, 120_000);
});
