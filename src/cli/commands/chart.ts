import { composeInstanceChart, fullOptions, type ComposeOptions } from '../../../machines/compose-instance-chart.ts';
import { chartToDot, chartToMermaid } from '../../../machines/render-chart.ts';
import { loadCatalog } from '../../catalog/load-catalog.ts';
import { EXIT, printJson, UsageError, type Output } from '../output.ts';

export const CHART_FORMATS = ['json', 'dot', 'mermaid', 'svg'] as const;

export interface ChartOptions {
  role: string;
  format: string;
  roles?: string | undefined;
  /** Comma-separated connectors to enable instead of all the role declares. */
  connectors?: string | undefined;
  /** Draw the chart of a pool with ingress off. */
  noIngress: boolean;
}

/**
 * DOT drawn as a standalone SVG document by Graphviz compiled to WebAssembly (@viz-js/viz, the
 * same renderer and options the /viz page uses), so `chart <role> --format svg > role.svg` needs
 * no server, no `dot` binary and no network. Loaded on demand: the other formats do not pay for
 * the WASM. `newrank` ranks nodes across clusters in one pass: without it dot reports "trouble in
 * init_rank" on the worker chart and drops an edge.
 */
async function dotToSvg(dot: string, output: Output): Promise<string> {
  const { instance } = await import('@viz-js/viz');
  const result = (await instance()).render(dot, { format: 'svg', graphAttributes: { newrank: true } });
  const messages = result.errors.map((e) => `graphviz ${e.level ?? 'error'}: ${e.message}`);
  if (result.status !== 'success') throw new Error(`chart: Graphviz could not draw the chart:\n${messages.join('\n')}`);
  for (const message of messages) output.err(message);
  return result.output;
}

/** `mvm-actors chart <role>`: the statechart generated from a role manifest. */
export async function chartCommand(options: ChartOptions, output: Output): Promise<number> {
  if (!(CHART_FORMATS as readonly string[]).includes(options.format)) {
    throw new UsageError(`chart: unknown format "${options.format}"; choose one of: ${CHART_FORMATS.join(', ')}`);
  }
  const { catalog } = await loadCatalog(options.roles);
  const role = catalog.roles.get(options.role);
  if (!role) throw new UsageError(`chart: unknown role "${options.role}"; loaded roles: ${[...catalog.roles.keys()].sort().join(', ')}`);
  const defaults = fullOptions(role.manifest);
  const compose: ComposeOptions = {
    ingress: defaults.ingress && !options.noIngress,
    connectors: options.connectors === undefined ? defaults.connectors : options.connectors.split(',').filter(Boolean),
    min_runtime_s: defaults.min_runtime_s,
  };
  const chart = composeInstanceChart(role.manifest, compose);
  if (options.format === 'json') printJson(output, chart);
  else if (options.format === 'dot') output.out(chartToDot(chart, `${role.manifest.name} instance`));
  else if (options.format === 'svg') output.out(await dotToSvg(chartToDot(chart, `${role.manifest.name} instance`), output));
  else output.out(chartToMermaid(chart));
  return EXIT.ok;
}
