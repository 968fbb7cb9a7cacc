/** Small helpers to summarise samples and print the benchmark table. */

/** Nearest-rank percentile of `values` (0 < p <= 100); NaN for no values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export interface Distribution {
  n: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

export function distribution(values: readonly number[]): Distribution {
  const mean = values.length ? values.reduce((a, b) => a + b, 0) / values.length : Number.NaN;
  return { n: values.length, p50: percentile(values, 50), p99: percentile(values, 99), max: values.length ? Math.max(...values) : Number.NaN, mean };
}

const grouped = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
export const int = (n: number): string => grouped.format(Math.round(n));
export const fixed = (n: number, digits: number): string => n.toFixed(digits);

export interface Row {
  /** Row label; an empty `id` marks a detail row under the previous figure. */
  id: string;
  label: string;
  figure: string;
  target?: string;
  /** undefined: not a target row. */
  pass?: boolean;
}

/** A plain-text table; detail rows (no id) are indented. */
export function renderTable(rows: readonly Row[]): string {
  const cells = rows.map((r) => [r.id, r.id ? r.label : `  ${r.label}`, r.figure, r.target ?? '', r.pass === undefined ? '' : r.pass ? 'PASS' : 'MISS']);
  const header = ['#', 'measurement', 'figure', 'target', 'result'];
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((cell, i) => (i === 2 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ').trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(header), rule, ...cells.map(line)].join('\n');
}
