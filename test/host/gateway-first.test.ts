import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { FakeDriver } from '../../src/driver/fake-driver.ts';
import { DriverError, type DriverOp, type InstanceSpec, type OpContext, type SnapshotRef } from '../../src/driver/vmm-driver.ts';
import type { ServiceSpec } from '../../src/schemas/role-manifest.ts';
import { aDesiredState } from '../helpers/fixtures.ts';
import { aTestHost, type TestHost } from './helpers.ts';

/**
 * Gateway-first under randomized interleavings. For each seed, a whole host runs over a fake
 * driver that gives every call a seeded pseudo-random latency on the simulated clock, while the
 * test applies a randomized desired state (several tenants, one or two gateways, worker and
 * capability pools), sometimes fails a gateway's first boot, crashes a gateway before it is ready,
 * revokes the gateway token until later, or applies a second generation mid-flight, and advances
 * the clock in random steps until everything settles. No worker (any instance of a role that
 * depends on another role, found from the manifests) may prepare drives or boot unless its tenant
 * has as many instances of the depended-on role running as the manifests and pools ask for, and
 * every instance ends running.
 */

const SEEDS = Array.from({ length: 50 }, (_, i) => i + 1);
const T0 = 1_764_000_000_000;
const SETTLE_LIMIT_MS = 30 * 60_000;

/** mulberry32: a tiny seeded PRNG, uniform in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface LoggedCall {
  seq: number;
  at: number;
  op: DriverOp;
  instanceId: string;
}

/** The fake driver, with each call held for a seeded random time on the simulated clock before it runs. */
class JitteryDriver extends FakeDriver {
  readonly callLog: LoggedCall[] = [];
  readonly #clock: SimulatedClock;
  readonly #random: () => number;
  #seq = 0;
  /** Called synchronously when an instance actor makes a call, before any latency. */
  onCall: (call: LoggedCall) => void = () => undefined;

  constructor(clock: SimulatedClock, random: () => number) {
    super({ clock });
    this.#clock = clock;
    this.#random = random;
  }

  async #jitter(op: DriverOp, instanceId: string, ctx: OpContext): Promise<void> {
    const call = { seq: ++this.#seq, at: this.#clock.now(), op, instanceId };
    this.callLog.push(call);
    this.onCall(call);
    const r = this.#random();
    const ms = r < 0.25 ? 0 : Math.floor(r * 3_000);
    if (ms === 0) return;
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.#clock.clearTimeout(handle);
        reject(new DriverError(op, instanceId, 'aborted', 'aborted while in flight', false));
      };
      const handle = this.#clock.setTimeout(() => {
        ctx.signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      ctx.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  override async prepareDrives(spec: InstanceSpec, ctx: OpContext): Promise<void> {
    await this.#jitter('prepareDrives', spec.instance_id, ctx);
    return super.prepareDrives(spec, ctx);
  }
  override async boot(spec: InstanceSpec, ctx: OpContext): Promise<void> {
    await this.#jitter('boot', spec.instance_id, ctx);
    return super.boot(spec, ctx);
  }
  override async checkReadiness(spec: InstanceSpec, service: ServiceSpec, ctx: OpContext): Promise<void> {
    await this.#jitter('checkReadiness', spec.instance_id, ctx);
    return super.checkReadiness(spec, service, ctx);
  }
  override async pause(id: string, ctx: OpContext): Promise<void> {
    await this.#jitter('pause', id, ctx);
    return super.pause(id, ctx);
  }
  override async resume(id: string, ctx: OpContext): Promise<void> {
    await this.#jitter('resume', id, ctx);
    return super.resume(id, ctx);
  }
  override async drain(id: string, ctx: OpContext): Promise<void> {
    await this.#jitter('drain', id, ctx);
    return super.drain(id, ctx);
  }
  override async snapshot(spec: InstanceSpec, ctx: OpContext): Promise<SnapshotRef> {
    await this.#jitter('snapshot', spec.instance_id, ctx);
    return super.snapshot(spec, ctx);
  }
  override async restore(spec: InstanceSpec, snapshot: SnapshotRef, ctx: OpContext): Promise<void> {
    await this.#jitter('restore', spec.instance_id, ctx);
    return super.restore(spec, snapshot, ctx);
  }
  override async stop(id: string, ctx: OpContext): Promise<void> {
    await this.#jitter('stop', id, ctx);
    return super.stop(id, ctx);
  }
  override async destroy(id: string, ctx: OpContext): Promise<void> {
    await this.#jitter('destroy', id, ctx);
    return super.destroy(id, ctx);
  }
}

// ---------------------------------------------------------------------------------------------

interface TenantPlan {
  tenant_id: string;
  gateways: number;
  /** A pool floor for the gateways (only with two). */
  gatewayFloor: number | undefined;
  workerPools: number[];
  capability: boolean;
  /** The first gateway's first boot fails; an operator starts it again later. */
  gatewayBootFails: boolean;
  /** The first gateway crashes while its services are starting (its restart policy relaunches it). */
  gatewayCrashes: boolean;
  /** The gateway token is revoked before the apply and put back later. */
  tokenRevoked: boolean;
  /** Not-ready probes each gateway answers before it is ready. */
  readyAfter: number[];
}

interface Scenario {
  tenants: TenantPlan[];
  /** A second generation adds a worker pool to the first tenant after this many clock steps. */
  secondApplyAfterSteps: number | undefined;
}

function scenarioFor(seed: number): Scenario {
  const rand = mulberry32(seed * 7919);
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const tenants: TenantPlan[] = Array.from({ length: int(1, 3) }, (_, i) => {
    const gateways = rand() < 0.35 ? 2 : 1;
    const gatewayBootFails = rand() < 0.3;
    return {
      tenant_id: `t${i}`,
      gateways,
      gatewayFloor: gateways === 2 && rand() < 0.5 ? 2 : undefined,
      workerPools: Array.from({ length: int(1, 2) }, () => int(1, 3)),
      capability: rand() < 0.3,
      gatewayBootFails,
      gatewayCrashes: !gatewayBootFails && rand() < 0.35,
      tokenRevoked: rand() < 0.2,
      readyAfter: Array.from({ length: gateways }, () => int(0, 4)),
    };
  });
  return { tenants, secondApplyAfterSteps: rand() < 0.4 ? int(1, 12) : undefined };
}

/** A desired-state document for the scenario, built from the documented example's pools. */
function documentFor(s: Scenario, generation: number): any {
  const example = aDesiredState();
  const [gatewayPool, workerPool] = example.tenants[0].pools;
  const capabilityPool = example.tenants[1].pools[1];
  const doc = { ...example, generation, tenants: [] as any[] };
  s.tenants.forEach((t, i) => {
    const pools: any[] = [
      { ...structuredClone(gatewayPool), desired_counts: { running: t.gateways, warm: 0, sleeping: 0 }, ...(t.gatewayFloor ? { sleep: { floor: t.gatewayFloor } } : {}) },
      ...t.workerPools.map((n, j) => ({ ...structuredClone(workerPool), pool_id: j === 0 ? 'workers' : 'more-workers', desired_counts: { running: n, warm: 0, sleeping: 0 } })),
    ];
    if (t.capability) pools.push({ ...structuredClone(capabilityPool), desired_counts: { running: 1, warm: 0, sleeping: 0 } });
    if (generation > 1 && i === 0) pools.push({ ...structuredClone(workerPool), pool_id: 'late-workers', desired_counts: { running: 2, warm: 0, sleeping: 0 } });
    doc.tenants.push({ tenant_id: t.tenant_id, tenant_net_id: 101 + i, ipv4_subnet: `10.${101 + i}.0.0/24`, pools });
  });
  return doc;
}

const flushTurns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

/** What the runs really did, summed over the seeds (checked at the end, so a scenario that stops happening is noticed). */
const exercised = { crashes: 0, restartsAfterFailedBoot: 0, tokensPutBack: 0, secondApplies: 0, dependentBootsGated: 0, waitedForGateway: 0, maxSimulatedMs: 0 };

let current: TestHost | undefined;
afterEach(async () => {
  await current?.host.close();
  current = undefined;
});

async function runSeed(seed: number): Promise<string[]> {
  const problems: string[] = [];
  const scenario = scenarioFor(seed);
  const rand = mulberry32(seed);
  const clock = new SimulatedClock();
  clock.set(T0);
  const driver = new JitteryDriver(clock, rand);
  const t = (current = await aTestHost({ clock, driver }));
  const { host } = t;

  // Which roles wait for which, and how many of each they need running: from the manifests and pools only.
  const roles = host.catalog.roles;
  const dependsOn = (role: string) => roles.get(role)?.manifest.depends_on.map((d) => d.role) ?? [];
  const needed = (tenantId: string, role: string) => {
    const pools = host.desiredState()?.tenants.find((x) => x.tenant_id === tenantId)?.pools.filter((p) => p.role === role) ?? [];
    return Math.max(1, roles.get(role)!.manifest.sleep.floor, ...pools.map((p) => p.sleep?.floor ?? 0));
  };
  const runningOf = (tenantId: string, role: string) => host.instances({ tenant: tenantId, role }).filter((i) => i.status === 'running').length;

  driver.onCall = (call) => {
    if (call.op !== 'prepareDrives' && call.op !== 'boot') return;
    const instance = host.instance(call.instanceId);
    if (!instance) return;
    for (const dep of dependsOn(instance.role)) {
      const have = runningOf(instance.tenant_id, dep);
      const need = needed(instance.tenant_id, dep);
      if (have < need) problems.push(`${call.op} of ${call.instanceId} at +${call.at - T0} ms while its tenant had ${have} of ${need} ${dep} running`);
    }
  };

  // Faults and readiness set up before anything runs.
  const gatewayId = (tenant: string, n: number) => `${tenant}-gateway-${n}`;
  const gatewayService = roles.get('gateway')!.manifest.services[0]!.name;
  for (const tp of scenario.tenants) {
    tp.readyAfter.forEach((n, i) => driver.setReadyAfterProbes(gatewayId(tp.tenant_id, i), gatewayService, tp.gatewayCrashes && i === 0 ? Math.max(n, 2) : n));
    if (tp.gatewayBootFails) driver.failNext('boot', { instanceId: gatewayId(tp.tenant_id, 0), code: 'injected', retryable: false });
    if (tp.capability) host.secrets.put(tp.tenant_id, 'imessage-credentials', `creds-${tp.tenant_id}`);
    if (tp.tokenRevoked) host.secrets.revoke(tp.tenant_id, 'gateway-token');
  }

  const first = await host.apply(documentFor(scenario, 1));
  if (!first.applied || first.issues.length > 0) return [`the first apply was not clean: ${JSON.stringify({ refusal: first.refusal, issues: first.issues })}`];

  const crashed = new Set<string>();
  const restarted = new Set<string>();
  const tokenBack = new Set<string>();
  let steps = 0;
  let applied = 1;
  const everyoneRunning = () => host.instances().length > 0 && host.instances().every((i) => i.status === 'running');
  while (clock.now() - T0 < SETTLE_LIMIT_MS) {
    await flushTurns(3);
    if (applied === 1 && scenario.secondApplyAfterSteps !== undefined && steps >= scenario.secondApplyAfterSteps) {
      const second = await host.apply(documentFor(scenario, 2));
      if (!second.applied) problems.push(`the second apply was refused: ${second.refusal}`);
      applied = 2;
    }
    for (const tp of scenario.tenants) {
      const gw = host.instance(gatewayId(tp.tenant_id, 0));
      if (tp.gatewayCrashes && !crashed.has(tp.tenant_id) && gw?.status === 'starting-services' && rand() < 0.6) {
        crashed.add(tp.tenant_id);
        driver.crash(gw.instance_id, 'SIGSEGV');
      }
      if (tp.gatewayBootFails && !restarted.has(tp.tenant_id) && gw?.status === 'failed' && rand() < 0.3) {
        restarted.add(tp.tenant_id);
        const r = host.start(gw.instance_id);
        if (!r.accepted) problems.push(`starting the failed ${gw.instance_id} again was refused: ${r.reason}`);
      }
      if (tp.tokenRevoked && !tokenBack.has(tp.tenant_id) && gw?.status === 'refused' && rand() < 0.3) {
        tokenBack.add(tp.tenant_id);
        host.secrets.put(tp.tenant_id, 'gateway-token', `token-${seed}-${tp.tenant_id}`);
      }
    }
    await flushTurns(2);
    if (everyoneRunning() && host.isSettled() && (scenario.secondApplyAfterSteps === undefined || applied === 2)) break;
    // Mostly short steps (calls overlap and finish in varied orders), sometimes long ones.
    clock.increment(1 + Math.floor(rand() * (rand() < 0.6 ? 300 : 2_500)));
    steps++;
  }
  await flushTurns(3);
  await host.flush();
  exercised.crashes += crashed.size;
  exercised.restartsAfterFailedBoot += restarted.size;
  exercised.tokensPutBack += tokenBack.size;
  exercised.secondApplies += applied - 1;
  exercised.dependentBootsGated += driver.callLog.filter((c) => c.op === 'boot' && dependsOn(host.instance(c.instanceId)?.role ?? '').length > 0).length;
  exercised.waitedForGateway += host.journal().filter((e) => e.to === 'waiting').length;
  exercised.maxSimulatedMs = Math.max(exercised.maxSimulatedMs, clock.now() - T0);

  // Every instance of the last applied document exists once and runs.
  const expected = documentFor(scenario, applied).tenants.flatMap((tn: any) => tn.pools.flatMap((p: any) => Array.from({ length: p.desired_counts.running }, (_, i) => `${tn.tenant_id}-${p.pool_id}-${i}`)));
  const ids = host.instances().map((i) => i.instance_id);
  if (JSON.stringify([...ids].sort()) !== JSON.stringify([...expected].sort())) problems.push(`instances ${JSON.stringify(ids)}, expected ${JSON.stringify(expected)}`);
  const notRunning = host.instances().filter((i) => i.status !== 'running');
  if (notRunning.length > 0) problems.push(`not running after ${Math.round((clock.now() - T0) / 1000)} s: ${notRunning.map((i) => `${i.instance_id}=${i.status}${i.status_reason ? ` (${i.status_reason})` : ''}`).join(', ')}`);

  // The journal agrees: a dependent instance's first provisioning or booting comes after the
  // transition that made its tenant's depended-on role reach the number it needs running.
  const journal = host.journal();
  for (const instance of host.instances()) {
    for (const dep of dependsOn(instance.role)) {
      const need = needed(instance.tenant_id, dep);
      const gatewayRunning = journal.filter((e) => e.kind === 'transition' && e.tenant_id === instance.tenant_id && host.instance(e.instance_id)?.role === dep && e.to === 'running');
      // The seq at which `need` distinct instances of the dependency had become running.
      const firstRunning = new Map<string, number>();
      for (const e of gatewayRunning) if (!firstRunning.has(e.instance_id)) firstRunning.set(e.instance_id, e.seq);
      const readySeq = [...firstRunning.values()].sort((a, b) => a - b)[need - 1];
      const starts = journal.filter((e) => e.instance_id === instance.instance_id && (e.to === 'provisioning' || e.to === 'booting'));
      if (starts.length > 0 && (readySeq === undefined || starts[0]!.seq < readySeq)) {
        problems.push(`journal: ${instance.instance_id} reached ${starts[0]!.to} at seq ${starts[0]!.seq}, before its tenant had ${need} ${dep} running (seq ${readySeq ?? 'never'})`);
      }
    }
  }
  if (!driver.callLog.some((c) => c.op === 'boot')) problems.push('no VM was ever booted');
  return problems;
}

describe('gateway-first under randomized interleavings', () => {
  it.each(SEEDS)('seed %i: no dependent instance prepares or boots before its gateways are ready, and everything ends running', async (seed) => {
    const problems = await runSeed(seed);
    expect(problems, `seed ${seed} (scenario ${JSON.stringify(scenarioFor(seed))})`).toEqual([]);
  });

  it('the runs exercised every scenario (gateway crashes, failed boots, revoked tokens, a second apply)', () => {
    expect(exercised.crashes).toBeGreaterThan(0);
    expect(exercised.restartsAfterFailedBoot).toBeGreaterThan(0);
    expect(exercised.tokensPutBack).toBeGreaterThan(0);
    expect(exercised.secondApplies).toBeGreaterThan(0);
    expect(exercised.dependentBootsGated).toBeGreaterThan(SEEDS.length);
    expect(exercised.waitedForGateway).toBeGreaterThan(SEEDS.length);
  });

  it('the seeds cover the interesting scenarios', () => {
    const all = SEEDS.map(scenarioFor).flatMap((s) => s.tenants);
    expect(all.some((t) => t.gateways === 2)).toBe(true);
    expect(all.some((t) => t.gatewayFloor === 2)).toBe(true);
    expect(all.some((t) => t.gatewayBootFails)).toBe(true);
    expect(all.some((t) => t.gatewayCrashes)).toBe(true);
    expect(all.some((t) => t.tokenRevoked)).toBe(true);
    expect(all.some((t) => t.capability)).toBe(true);
    expect(SEEDS.map(scenarioFor).some((s) => s.secondApplyAfterSteps !== undefined)).toBe(true);
  });
});
