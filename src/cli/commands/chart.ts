import { composeInstanceChart, fullOptions, type ComposeOptions } from '../../../machines/compose-instance-chart.ts';
import { chartToDot, chartToMermaid } from '../../../machines/render-chart.ts';
import { loadCatalog } from '../../catalog/load-catalog.ts';
import { EXIT, printJson, UsageError, type Output } from '../output.ts';

export const CHART_FORMATS = ['json', 'dot', 'mermaid'] as const;

export interface ChartOptions {
  role: string;
  format: string;
  roles?: string | undefined;
  /** Comma-separated connectors to enable instead of all the role declares. */
  connectors?: string | undefined;
  /** Draw the chart of a pool with ingress off. */
  noIngress: boolean;
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
  else output.out(chartToMermaid(chart));
  return EXIT.ok;
}
