import type { ActionRef, ChartConfig, StateConfig, TransitionConfig, Transitions } from './chart-config.ts';

/**
 * Root-level observations that only record something in context (say `obs.secrets-changed`
 * with `recordSecrets`), per top-level state: where nothing below the root can handle the event
 * and no eventless transition can follow, XState's whole macrostep (select transitions over
 * every active region, compute exit and entry sets, look for eventless transitions, rebuild the
 * state value) ends in the same configuration with the root's actions applied to the context.
 * src/actors applies those actions directly there; this function says where that is exact.
 *
 * An event qualifies in a top-level state when:
 * - the root handles it with exactly one transition: no target, no guard, no reenter, actions only;
 * - no state in that top-level state's subtree (itself included) handles it, by its exact name or
 *   a wildcard (a deeper handler wins over the root's in XState);
 * - no state in that subtree and not the root has `always` transitions (a context change could
 *   enable one), and the top-level state is not final (a final root child ends the actor).
 */

export type RootOnlyEvents = ReadonlyMap<string, ReadonlyMap<string, readonly ActionRef[]>>;

const transitionsOf = (t: Transitions | undefined): TransitionConfig[] => (t === undefined ? [] : Array.isArray(t) ? t : [t]);

/** XState's event descriptors: the exact type, `*`, or a prefix wildcard such as `obs.*`. */
function descriptorMatches(descriptor: string, eventType: string): boolean {
  if (descriptor === eventType || descriptor === '*') return true;
  return descriptor.endsWith('.*') && eventType.startsWith(descriptor.slice(0, -1));
}

/** Adds the event descriptors the subtree handles; false when it has an eventless transition (then nothing qualifies there). */
function subtreeHandlers(node: StateConfig, descriptors: Set<string>): boolean {
  if ((node.always ?? []).length > 0) return false;
  for (const descriptor of Object.keys(node.on ?? {})) descriptors.add(descriptor);
  for (const child of Object.values(node.states ?? {})) if (!subtreeHandlers(child, descriptors)) return false;
  return true;
}

export function rootOnlyEvents(chart: ChartConfig): RootOnlyEvents {
  const result = new Map<string, Map<string, readonly ActionRef[]>>();
  if ((chart.always ?? []).length > 0) return result;
  const candidates = new Map<string, readonly ActionRef[]>();
  for (const [eventType, transitions] of Object.entries(chart.on ?? {})) {
    const list = transitionsOf(transitions);
    if (list.length !== 1 || eventType.includes('*')) continue;
    const t = list[0]!;
    if (t.target !== undefined || t.guard !== undefined || t.reenter !== undefined) continue;
    candidates.set(eventType, t.actions ?? []);
  }
  if (candidates.size === 0) return result;
  for (const [name, state] of Object.entries(chart.states)) {
    if (state.type === 'final') continue;
    const descriptors = new Set<string>();
    if (!subtreeHandlers(state, descriptors)) continue;
    const events = new Map<string, readonly ActionRef[]>();
    for (const [eventType, actions] of candidates) {
      if (![...descriptors].some((d) => descriptorMatches(d, eventType))) events.set(eventType, actions);
    }
    if (events.size > 0) result.set(name, events);
  }
  return result;
}
