/**
 * The pure statechart layer: role manifest -> instance chart (data with names only), the
 * closed vocabulary those charts use, the tenant supervisor reducer, and chart renderers.
 * Nothing here performs I/O or reads the clock; src/ implements the vocabulary. See README.md.
 */
export * from './chart-config.ts';
export * from './vocabulary.ts';
export * from './compose-instance-chart.ts';
export * from './check-chart-vocabulary.ts';
export * from './instance-context.ts';
export * from './tenant-supervisor.ts';
export * from './render-chart.ts';
export * from './root-only-events.ts';
