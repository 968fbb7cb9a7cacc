import { describe, expect, it } from 'vitest';
import { initialTenantState, tenantTransition, type RolePolicy, type TenantEvent, type TenantState } from '../../machines/tenant-supervisor.ts';

const roles: Record<string, RolePolicy> = {
  gateway: { name: 'gateway', depends_on: [], rank: 0 },
  worker: { name: 'worker', depends_on: [{ role: 'gateway', condition: 'ready' }], rank: 1 },
};
const resources = { vcpus: 2, mem_mib: 1024 };

function configure(members: { id: string; role: string; target: 'running' | 'warm' | 'sleeping' | 'retired' | 'removed' }[], extra: Partial<Extract<TenantEvent, { type: 'tenant.configure' }>> = {}): TenantEvent {
  return {
    type: 'tenant.configure',
    at: 0,
    roles,
    floors: { gateway: 1, worker: 0 },
    quotas: {},
    members: members.map((m) => ({ instance_id: m.id, pool_id: m.role, role: m.role, target: m.target, resources })),
    ...extra,
  };
}

function run(...events: TenantEvent[]): TenantState {
  return events.reduce(tenantTransition, initialTenantState('acme'));
}

const status = (id: string, s: string): TenantEvent => ({ type: 'member.status', at: 1, instance_id: id, status: s });

describe('tenant supervisor', () => {
  it('starts instances in dependency order: gateways before workers', () => {
    const state = run(configure([{ id: 'w-0', role: 'worker', target: 'running' }, { id: 'g-0', role: 'gateway', target: 'running' }]));
    expect(state.outbox).toEqual([
      { instance_id: 'g-0', type: 'cmd.start' },
      { instance_id: 'w-0', type: 'cmd.start' },
    ]);
  });

  it('tells a waiting worker its dependencies are ready only once the gateway runs', () => {
    let state = run(configure([{ id: 'g-0', role: 'gateway', target: 'running' }, { id: 'w-0', role: 'worker', target: 'running' }]));
    state = tenantTransition(state, { type: 'outbox.taken', at: 1 });
    state = tenantTransition(state, status('w-0', 'waiting'));
    state = tenantTransition(state, status('g-0', 'starting-services'));
    expect(state.outbox).toEqual([]);
    state = tenantTransition(state, status('g-0', 'running'));
    expect(state.outbox).toEqual([{ instance_id: 'w-0', type: 'dep.ready' }]);
  });

  it('sends each command once per status', () => {
    let state = run(configure([{ id: 'g-0', role: 'gateway', target: 'running' }]));
    state = tenantTransition(state, { type: 'outbox.taken', at: 1 });
    state = tenantTransition(state, status('w-x', 'running')); // unknown member: ignored
    state = tenantTransition(state, configure([{ id: 'g-0', role: 'gateway', target: 'running' }]));
    // A new configure re-sends what is due (the instance is still pending).
    expect(state.outbox).toEqual([{ instance_id: 'g-0', type: 'cmd.start' }]);
  });

  it('refuses to sleep the last running gateway (the floor) and records why, once', () => {
    let state = run(configure([{ id: 'g-0', role: 'gateway', target: 'running' }]), status('g-0', 'running'), { type: 'outbox.taken', at: 1 });
    state = tenantTransition(state, { type: 'request', at: 2, instance_id: 'g-0', command: 'sleep' });
    expect(state.outbox).toEqual([]);
    expect(state.log.at(-1)).toMatchObject({ instance_id: 'g-0', outcome: 'refused', command: 'cmd.sleep', reason: 'sleep-floor:gateway:1' });
    const logged = state.log.length;
    state = tenantTransition(state, status('w-0', 'running'));
    expect(state.log.length).toBe(logged);
  });

  it('allows sleeping a gateway when another keeps the floor, but not both', () => {
    let state = run(
      configure([
        { id: 'g-0', role: 'gateway', target: 'running' },
        { id: 'g-1', role: 'gateway', target: 'running' },
      ]),
      status('g-0', 'running'),
      status('g-1', 'running'),
      { type: 'outbox.taken', at: 1 },
    );
    state = tenantTransition(state, configure([
      { id: 'g-0', role: 'gateway', target: 'sleeping' },
      { id: 'g-1', role: 'gateway', target: 'sleeping' },
    ]));
    expect(state.outbox).toEqual([{ instance_id: 'g-0', type: 'cmd.sleep' }]);
    expect(state.log.filter((l) => l.outcome === 'refused').map((l) => l.instance_id)).toEqual(['g-1']);
  });

  it('retries a refused sleep when the floor allows it later', () => {
    let state = run(configure([{ id: 'g-0', role: 'gateway', target: 'sleeping' }, { id: 'g-1', role: 'gateway', target: 'running' }]), status('g-0', 'running'));
    expect(state.outbox).toEqual([{ instance_id: 'g-0', type: 'cmd.start' }, { instance_id: 'g-1', type: 'cmd.start' }]);
    expect(state.log.at(-1)).toMatchObject({ instance_id: 'g-0', outcome: 'refused', reason: 'sleep-floor:gateway:1' });
    state = tenantTransition(state, { type: 'outbox.taken', at: 1 });
    state = tenantTransition(state, status('g-1', 'running'));
    expect(state.outbox).toEqual([{ instance_id: 'g-0', type: 'cmd.sleep' }]);
  });

  it('refuses a start that would break a quota', () => {
    const state = run(
      configure(
        [
          { id: 'g-0', role: 'gateway', target: 'running' },
          { id: 'g-1', role: 'gateway', target: 'running' },
        ],
        { quotas: { max_vcpus: 3 } },
      ),
      status('g-0', 'booting'),
    );
    expect(state.log).toContainEqual(expect.objectContaining({ instance_id: 'g-1', outcome: 'refused', reason: 'quota:max_vcpus:3' }));
  });

  it('destroys members that disappear from the configuration and retires scaled-down ones', () => {
    let state = run(configure([{ id: 'g-0', role: 'gateway', target: 'running' }, { id: 'w-0', role: 'worker', target: 'running' }, { id: 'w-1', role: 'worker', target: 'running' }]));
    state = tenantTransition(state, { type: 'outbox.taken', at: 1 });
    state = tenantTransition(state, configure([{ id: 'g-0', role: 'gateway', target: 'running' }, { id: 'w-1', role: 'worker', target: 'retired' }]));
    expect(state.outbox).toEqual(expect.arrayContaining([
      { instance_id: 'w-0', type: 'cmd.destroy' },
      { instance_id: 'w-1', type: 'cmd.retire' },
    ]));
  });

  it('numbers log entries for its lifetime and keeps the log bounded', () => {
    let state = run(configure([{ id: 'g-0', role: 'gateway', target: 'running' }]), status('g-0', 'running'));
    for (let i = 0; i < 250; i++) {
      state = tenantTransition(state, { type: 'request', at: i, instance_id: 'g-0', command: 'stop' });
    }
    expect(state.log).toHaveLength(200);
    expect(state.log.at(-1)!.seq).toBe(state.next_log_seq - 1);
    expect(state.log[0]!.seq).toBe(state.next_log_seq - 200);
  });

  it('sends a command again when a member enters the same status again', () => {
    let state = run(configure([{ id: 'g-0', role: 'gateway', target: 'running' }]));
    expect(state.outbox).toEqual([{ instance_id: 'g-0', type: 'cmd.start' }]);
    state = tenantTransition(state, { type: 'outbox.taken', at: 1 });
    state = tenantTransition(state, status('g-0', 'running'));
    state = tenantTransition(state, status('g-0', 'pending')); // e.g. restored from an older chart
    expect(state.outbox).toEqual([{ instance_id: 'g-0', type: 'cmd.start' }]);
  });

  it('gives failed and refused members one more start per configuration, not a loop', () => {
    let state = run(configure([{ id: 'g-0', role: 'gateway', target: 'running' }]), { type: 'outbox.taken', at: 1 }, status('g-0', 'failed'));
    expect(state.outbox).toEqual([]);
    state = tenantTransition(state, configure([{ id: 'g-0', role: 'gateway', target: 'running' }]));
    expect(state.outbox).toEqual([{ instance_id: 'g-0', type: 'cmd.start' }]);
    state = tenantTransition(state, { type: 'outbox.taken', at: 2 });
    state = tenantTransition(state, status('g-0', 'preflight'));
    state = tenantTransition(state, status('g-0', 'refused'));
    expect(state.outbox).toEqual([]);
  });
});
