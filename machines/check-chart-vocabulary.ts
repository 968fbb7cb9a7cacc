import type { ChartConfig, StateConfig, TransitionConfig, Transitions } from './chart-config.ts';
import { ACTIONS, ACTORS, GUARDS, isKnownEventType } from './vocabulary.ts';

export class ChartVocabularyError extends Error {
  override readonly name = 'ChartVocabularyError';
  readonly code = 'MVM_ERR_CHART_VOCABULARY';
}

const list = (t: Transitions | undefined): TransitionConfig[] => (t === undefined ? [] : Array.isArray(t) ? t : [t]);

/**
 * Walks a chart and refuses anything XState would mishandle silently: an action, guard or actor
 * outside the vocabulary, an `after` delay (not restored from snapshots), an unknown event, or a
 * function where data belongs.
 */
export function checkChartVocabulary(chart: ChartConfig, role: string): void {
  const problems: string[] = [];
  const visit = (node: StateConfig, path: string) => {
    for (const [key, value] of Object.entries(node)) {
      if (typeof value === 'function') problems.push(`${path}.${key}: a function; charts hold names only`);
    }
    if ('after' in node) problems.push(`${path}.after: delays are not restored from snapshots; use armDeadline and the deadline actor`);
    const checkTransition = (t: TransitionConfig, where: string) => {
      for (const a of t.actions ?? []) if (!Object.hasOwn(ACTIONS, a.type)) problems.push(`${where}: unknown action "${a.type}"`);
      if (t.guard && !Object.hasOwn(GUARDS, t.guard.type)) problems.push(`${where}: unknown guard "${t.guard.type}"`);
    };
    const actionLists = [node.entry, node.exit].filter((a): a is NonNullable<typeof a> => Array.isArray(a));
    for (const a of actionLists.flat()) if (!Object.hasOwn(ACTIONS, a.type)) problems.push(`${path}: unknown action "${a.type}"`);
    for (const [event, transitions] of Object.entries(node.on ?? {})) {
      if (!isKnownEventType(event)) problems.push(`${path}.on: unknown event "${event}"`);
      list(transitions).forEach((t) => checkTransition(t, `${path}.on["${event}"]`));
    }
    (node.always ?? []).forEach((t) => checkTransition(t, `${path}.always`));
    list(node.onDone).forEach((t) => checkTransition(t, `${path}.onDone`));
    for (const invoke of node.invoke ?? []) {
      if (!Object.hasOwn(ACTORS, invoke.src)) problems.push(`${path}.invoke: unknown actor "${invoke.src}"`);
      list(invoke.onDone).forEach((t) => checkTransition(t, `${path}.invoke[${invoke.id}].onDone`));
      list(invoke.onError).forEach((t) => checkTransition(t, `${path}.invoke[${invoke.id}].onError`));
    }
    for (const [name, child] of Object.entries(node.states ?? {})) visit(child, `${path}.${name}`);
  };
  visit(chart, chart.id);
  if (problems.length > 0) throw new ChartVocabularyError(`chart for role "${role}" is outside the vocabulary:\n  ${problems.join('\n  ')}`);
}
