import { fromTransition } from 'xstate';

/**
 * The tenant actor: a pure reducer over its members' statuses and targets. It decides which
 * command each instance gets next, in dependency order, and keeps the rules that span
 * instances: startup dependencies (a worker waits for its tenant's gateway), sleep floors,
 * and quotas at start and wake. It performs no effects: commands go to an outbox that the host
 * drains into instance actors, so its snapshot can be persisted and replayed, and it can be
 * tested as a function. Role differences arrive as data (RolePolicy), never as names.
 */

/** What a member should be: from the desired state, or from an operator request (stopped). */
export type Target = 'running' | 'warm' | 'sleeping' | 'stopped' | 'retired' | 'removed';

export interface RolePolicy {
  name: string;
  depends_on: { role: string; condition: 'ready' | 'running' }[];
  /** Start order: roles with no dependencies first. */
  rank: number;
}

export interface MemberResources {
  vcpus: number;
  mem_mib: number;
}

export interface TenantMember {
  instance_id: string;
  pool_id: string;
  role: string;
  target: Target;
  status: string;
  resources: MemberResources;
  /** The last command sent, keyed by the status it was sent in, so a command is sent once per status. */
  sent: string | null;
  /** The reason of the last refusal logged, so a standing refusal is logged once and retried quietly. */
  refused: string | null;
  /** Set by each configure: a failed or refused instance gets one more start from a new apply. */
  retry: boolean;
}

export interface TenantLogEntry {
  /** Increases by one per entry for the tenant's lifetime, so readers can tell new entries from old. */
  seq: number;
  at: number;
  instance_id: string;
  outcome: 'refused' | 'accepted';
  command: string;
  reason: string | null;
}

export interface TenantCommand {
  instance_id: string;
  type: 'cmd.start' | 'cmd.stop' | 'cmd.warm' | 'cmd.resume' | 'cmd.sleep' | 'cmd.wake' | 'cmd.retire' | 'cmd.destroy' | 'dep.ready';
}

export interface TenantQuotas {
  max_instances?: number | undefined;
  max_vcpus?: number | undefined;
  max_mem_mib?: number | undefined;
}

export interface TenantState {
  tenant_id: string;
  roles: Record<string, RolePolicy>;
  /** Effective sleep floor per role: the role's floor, raised by any pool's. */
  floors: Record<string, number>;
  quotas: TenantQuotas;
  members: Record<string, TenantMember>;
  /** Recent refusals and accepted requests, newest last (bounded). */
  log: TenantLogEntry[];
  /** The seq the next log entry gets. */
  next_log_seq: number;
  outbox: TenantCommand[];
}

export type TenantEvent =
  | {
      type: 'tenant.configure';
      at: number;
      roles: Record<string, RolePolicy>;
      floors: Record<string, number>;
      quotas: TenantQuotas;
      members: { instance_id: string; pool_id: string; role: string; target: Target; resources: MemberResources }[];
    }
  | { type: 'member.status'; at: number; instance_id: string; status: string }
  | { type: 'member.gone'; at: number; instance_id: string }
  | { type: 'request'; at: number; instance_id: string; command: 'start' | 'stop' | 'sleep' | 'wake' | 'warm' }
  | { type: 'outbox.taken'; at: number };

const LOG_LIMIT = 200;
/** Statuses in which an instance uses its resources (for quotas) or could be asked to start. */
const ACTIVE = new Set(['preflight', 'provisioning', 'booting', 'starting-services', 'running', 'warming', 'warm', 'resuming', 'draining', 'snapshotting', 'waking', 'stopping']);
const STARTABLE = new Set(['pending', 'stopped']);
const GONE = new Set(['destroying', 'destroyed']);
const STARTING_COMMAND = /:(cmd\.start|cmd\.wake|cmd\.resume|dep\.ready)$/;

export function initialTenantState(tenant_id: string): TenantState {
  return { tenant_id, roles: {}, floors: {}, quotas: {}, members: {}, log: [], next_log_seq: 1, outbox: [] };
}

function runningCount(state: TenantState, role: string): number {
  return Object.values(state.members).filter((m) => m.role === role && m.status === 'running').length;
}

/** Dependencies of a role satisfied: each depended-on role has at least max(1, floor) instances running. */
export function dependenciesSatisfied(state: TenantState, role: string): boolean {
  const policy = state.roles[role];
  if (!policy) return false;
  return policy.depends_on.every((dep) => runningCount(state, dep.role) >= Math.max(1, state.floors[dep.role] ?? 0));
}

/** Why starting or waking this member would break a quota, or null. */
function quotaProblem(state: TenantState, member: TenantMember): string | null {
  // Active: using resources now, or already told to start (its status has not caught up yet).
  const active = Object.values(state.members).filter((m) => m.instance_id !== member.instance_id && (ACTIVE.has(m.status) || (m.sent !== null && STARTING_COMMAND.test(m.sent))));
  const q = state.quotas;
  const vcpus = active.reduce((n, m) => n + m.resources.vcpus, member.resources.vcpus);
  const mem = active.reduce((n, m) => n + m.resources.mem_mib, member.resources.mem_mib);
  if (q.max_instances !== undefined && active.length + 1 > q.max_instances) return `quota:max_instances:${q.max_instances}`;
  if (q.max_vcpus !== undefined && vcpus > q.max_vcpus) return `quota:max_vcpus:${q.max_vcpus}`;
  if (q.max_mem_mib !== undefined && mem > q.max_mem_mib) return `quota:max_mem_mib:${q.max_mem_mib}`;
  return null;
}

/** Why warming or sleeping this member would take its role below the floor, or null. */
function floorProblem(state: TenantState, member: TenantMember, pendingStops: Map<string, number>): string | null {
  const floor = state.floors[member.role] ?? 0;
  if (member.status !== 'running' || floor === 0) return null;
  const left = runningCount(state, member.role) - (pendingStops.get(member.role) ?? 0) - 1;
  return left < floor ? `sleep-floor:${member.role}:${floor}` : null;
}

/** The next command for a member given its target and status, or null if none is due. */
function wantedCommand(state: TenantState, member: TenantMember): TenantCommand['type'] | null {
  const { status, target } = member;
  if (status === 'destroyed') return null;
  if (target === 'removed') return GONE.has(status) ? null : 'cmd.destroy';
  if (target === 'retired') return GONE.has(status) ? null : 'cmd.retire';
  if (target === 'stopped') return status === 'stopped' || status === 'stopping' || status === 'pending' || status === 'refused' || status === 'failed' ? null : 'cmd.stop';
  if (status === 'waiting') return dependenciesSatisfied(state, member.role) ? 'dep.ready' : null;
  if (STARTABLE.has(status)) return 'cmd.start';
  if ((status === 'failed' || status === 'refused') && member.retry) return 'cmd.start';
  switch (target) {
    case 'running':
      return status === 'warm' ? 'cmd.resume' : status === 'sleeping' ? 'cmd.wake' : null;
    case 'warm':
      return status === 'running' ? 'cmd.warm' : status === 'sleeping' ? 'cmd.wake' : null;
    case 'sleeping':
      return status === 'running' || status === 'warm' ? 'cmd.sleep' : null;
  }
}

/** Adds due commands to the outbox in start order (dependencies first), applying floors and quotas. */
function decide(state: TenantState, at: number): TenantState {
  const members = { ...state.members };
  const outbox = [...state.outbox];
  const log = [...state.log];
  const pendingStops = new Map<string, number>();
  const ordered = Object.values(members).sort(
    (a, b) => (state.roles[a.role]?.rank ?? 0) - (state.roles[b.role]?.rank ?? 0) || a.instance_id.localeCompare(b.instance_id),
  );
  const view: TenantState = { ...state, members };
  for (const member of ordered) {
    const command = wantedCommand(view, member);
    if (!command) continue;
    const key = `${member.status}:${command}`;
    if (member.sent === key) continue;
    let refusal: string | null = null;
    if (command === 'cmd.warm' || command === 'cmd.sleep') refusal = floorProblem(view, member, pendingStops);
    if (command === 'cmd.start' || command === 'cmd.wake' || command === 'cmd.resume') refusal = quotaProblem(view, member);
    if (refusal) {
      if (member.refused !== refusal) log.push({ seq: 0, at, instance_id: member.instance_id, outcome: 'refused', command, reason: refusal });
      members[member.instance_id] = { ...member, refused: refusal };
      continue;
    }
    members[member.instance_id] = { ...member, sent: key, refused: null, retry: command === 'cmd.start' ? false : member.retry };
    if (command === 'cmd.warm' || command === 'cmd.sleep') pendingStops.set(member.role, (pendingStops.get(member.role) ?? 0) + 1);
    outbox.push({ instance_id: member.instance_id, type: command });
  }
  return { ...state, members, outbox, log };
}

const REQUEST_TARGET: Record<string, Target> = { start: 'running', wake: 'running', warm: 'warm', sleep: 'sleeping', stop: 'stopped' };

export function tenantTransition(state: TenantState, event: TenantEvent): TenantState {
  return numberLog(reduce(state, event));
}

/** Gives new log entries their seq and keeps the log bounded. */
function numberLog(state: TenantState): TenantState {
  if (!state.log.some((entry) => entry.seq === 0)) return state;
  let next = state.next_log_seq;
  const log = state.log.map((entry) => (entry.seq === 0 ? { ...entry, seq: next++ } : entry)).slice(-LOG_LIMIT);
  return { ...state, log, next_log_seq: next };
}

function reduce(state: TenantState, event: TenantEvent): TenantState {
  switch (event.type) {
    case 'tenant.configure': {
      const members: Record<string, TenantMember> = {};
      for (const m of event.members) {
        const existing = state.members[m.instance_id];
        // A new apply re-sends what is due, so an instance that failed is tried again.
        members[m.instance_id] = { ...m, status: existing?.status ?? 'pending', sent: null, refused: null, retry: true };
      }
      for (const [id, m] of Object.entries(state.members)) {
        if (!members[id] && m.status !== 'destroyed') members[id] = { ...m, target: 'removed', sent: null, refused: null, retry: false };
      }
      return decide({ ...state, roles: event.roles, floors: event.floors, quotas: event.quotas, members }, event.at);
    }
    case 'member.status': {
      const member = state.members[event.instance_id];
      if (!member || member.status === event.status) return state;
      // A command is due once per entry into a status, so entering a status again may send it again.
      return decide({ ...state, members: { ...state.members, [event.instance_id]: { ...member, status: event.status, sent: null } } }, event.at);
    }
    case 'member.gone': {
      if (!state.members[event.instance_id]) return state;
      const members = { ...state.members };
      delete members[event.instance_id];
      return decide({ ...state, members }, event.at);
    }
    case 'request': {
      const member = state.members[event.instance_id];
      if (!member) return state;
      const accepted = (next: TenantState, command: string, reason: string | null): TenantState => ({
        ...next,
        log: [...next.log, { seq: 0, at: event.at, instance_id: member.instance_id, outcome: 'accepted' as const, command, reason }],
      });
      // An explicit start also retries a refused or failed instance, which reconciling never does on its own.
      if (event.command === 'start' && (member.status === 'refused' || member.status === 'failed')) {
        const quota = quotaProblem(state, member);
        if (quota) return { ...state, log: [...state.log, { seq: 0, at: event.at, instance_id: member.instance_id, outcome: 'refused', command: 'cmd.start', reason: quota }] };
        const target = member.target === 'stopped' ? 'running' : member.target;
        const next = { ...state, members: { ...state.members, [member.instance_id]: { ...member, target, sent: `${member.status}:cmd.start`, refused: null } }, outbox: [...state.outbox, { instance_id: member.instance_id, type: 'cmd.start' as const }] };
        return accepted(next, 'cmd.start', null);
      }
      const target = REQUEST_TARGET[event.command]!;
      const before = state.outbox.length;
      const next = decide({ ...state, members: { ...state.members, [member.instance_id]: { ...member, target, sent: null, refused: null } } }, event.at);
      const refusal = next.log.slice(state.log.length).find((l) => l.instance_id === member.instance_id && l.outcome === 'refused');
      if (refusal) return next;
      const queued = next.outbox.slice(before).find((c) => c.instance_id === member.instance_id);
      return accepted(next, queued?.type ?? `request.${event.command}`, queued ? null : `nothing to do in status ${member.status}`);
    }
    case 'outbox.taken':
      return state.outbox.length === 0 ? state : { ...state, outbox: [] };
    default:
      // XState's own events (xstate.stop, ...) leave the state as it is.
      return state;
  }
}

/** The tenant actor logic: persisted and restored like any XState actor. */
export const tenantLogic = fromTransition((state: TenantState, event: TenantEvent) => tenantTransition(state, event), ({ input }: { input: { tenant_id: string } }) =>
  initialTenantState(input.tenant_id),
);
