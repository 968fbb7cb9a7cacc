import type { ChartConfig, StateConfig, Transitions, TransitionConfig } from './chart-config.ts';

/** A transition flattened for drawing: from one state path to another, labelled by its event. */
export interface ChartEdge {
  from: string;
  to: string;
  label: string;
}

const list = (t: Transitions | undefined): TransitionConfig[] => (t === undefined ? [] : Array.isArray(t) ? t : [t]);

function resolveTarget(target: string, sourcePath: string[]): string {
  if (target.startsWith('#vm.')) return target.slice('#vm.'.length);
  if (target.startsWith('.')) return [...sourcePath, target.slice(1)].join('.');
  return [...sourcePath.slice(0, -1), target].join('.');
}

function describeGuard(t: TransitionConfig): string {
  return t.guard ? ` [${t.guard.type}]` : '';
}

/** Every state path and every transition of a chart, in document order. */
export function chartGraph(chart: ChartConfig): { states: { path: string; node: StateConfig }[]; edges: ChartEdge[] } {
  const states: { path: string; node: StateConfig }[] = [];
  const edges: ChartEdge[] = [];
  const visit = (node: StateConfig, path: string[]) => {
    if (path.length > 0) states.push({ path: path.join('.'), node });
    const from = path.join('.');
    const add = (t: TransitionConfig, label: string) => {
      if (t.target) edges.push({ from, to: resolveTarget(t.target, path), label: `${label}${describeGuard(t)}` });
    };
    for (const [event, ts] of Object.entries(node.on ?? {})) list(ts).forEach((t) => add(t, event));
    (node.always ?? []).forEach((t) => add(t, 'always'));
    list(node.onDone).forEach((t) => add(t, 'done'));
    for (const invoke of node.invoke ?? []) {
      list(invoke.onDone).forEach((t) => add(t, `${invoke.src} done`));
      list(invoke.onError).forEach((t) => add(t, `${invoke.src} error`));
    }
    for (const [name, child] of Object.entries(node.states ?? {})) visit(child, [...path, name]);
  };
  visit(chart, []);
  return { states, edges };
}

const dotId = (path: string) => `"${path}"`;

/** Graphviz DOT: compound states as clusters, parallel regions dashed. */
export function chartToDot(chart: ChartConfig, title: string): string {
  // newrank: rank nodes across clusters in one pass; without it dot reports "trouble in
  // init_rank" on charts like the worker's and silently drops an edge.
  const lines = [`digraph ${JSON.stringify(title)} {`, '  rankdir=LR;', '  newrank=true;', '  node [shape=box, style=rounded, fontname="Helvetica"];', '  edge [fontname="Helvetica", fontsize=10];'];
  const emit = (node: StateConfig, path: string[], indent: string) => {
    for (const [name, child] of Object.entries(node.states ?? {})) {
      const childPath = [...path, name].join('.');
      if (child.states) {
        lines.push(`${indent}subgraph "cluster_${childPath}" {`, `${indent}  label=${JSON.stringify(name + (child.type === 'parallel' ? ' (parallel)' : ''))};`);
        if (child.type === 'parallel') lines.push(`${indent}  style=dashed;`);
        lines.push(`${indent}  ${dotId(childPath)} [label=${JSON.stringify(name)}, shape=point];`);
        emit(child, [...path, name], `${indent}  `);
        lines.push(`${indent}}`);
      } else {
        lines.push(`${indent}${dotId(childPath)} [label=${JSON.stringify(name)}${child.type === 'final' ? ', peripheries=2' : ''}];`);
      }
    }
  };
  emit(chart, [], '  ');
  for (const edge of chartGraph(chart).edges) lines.push(`  ${dotId(edge.from)} -> ${dotId(edge.to)} [label=${JSON.stringify(edge.label)}];`);
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

const mermaidId = (path: string) => path.replace(/[^A-Za-z0-9]/g, '_');

/** Mermaid stateDiagram-v2, for docs and issues. */
export function chartToMermaid(chart: ChartConfig): string {
  const lines = ['stateDiagram-v2'];
  const emit = (node: StateConfig, path: string[], indent: string) => {
    const names = Object.keys(node.states ?? {});
    if (node.initial) lines.push(`${indent}[*] --> ${mermaidId([...path, node.initial].join('.'))}`);
    names.forEach((name, i) => {
      const child = node.states![name]!;
      const id = mermaidId([...path, name].join('.'));
      lines.push(`${indent}state "${name}" as ${id}`);
      if (child.states) {
        lines.push(`${indent}state ${id} {`);
        emit(child, [...path, name], `${indent}  `);
        lines.push(`${indent}}`);
      }
      if (child.type === 'final') lines.push(`${indent}${id} --> [*]`);
      if (node.type === 'parallel' && i < names.length - 1) lines.push(`${indent}--`);
    });
  };
  emit(chart, [], '  ');
  for (const edge of chartGraph(chart).edges) lines.push(`  ${mermaidId(edge.from)} --> ${mermaidId(edge.to)}: ${edge.label.replaceAll(':', ' ')}`);
  return `${lines.join('\n')}\n`;
}
