import { benchDevMode } from './dev-mode.ts';
import { benchFirecracker } from './firecracker.ts';
import { benchNet } from './net.ts';
import { benchOpenClaw } from './openclaw.ts';
import { renderTable, type Row } from './report.ts';

/**
 * The benchmark parts of the drivers and integrations (issues 5, 6 and 7), run after the core
 * actor-runtime parts: each is a module of its own that returns rows to print and figures for
 * `--json`. A part that cannot run here (not root, OpenClaw not installed) says why instead of
 * printing figures.
 */
export interface PartResult {
  part: string;
  title: string;
  rows: { label: string; figure: string }[];
  json: Record<string, number>;
  /** Set when the part could not run, with the reason. */
  unavailable?: string;
  seconds: number;
}

export const LATER_PARTS = ['dev', 'firecracker', 'net', 'openclaw'] as const;
export type LaterPart = (typeof LATER_PARTS)[number];

const PARTS: Record<LaterPart, { title: string; run: () => Promise<{ rows: PartResult['rows']; json: PartResult['json'] } | null> }> = {
  dev: { title: 'dev mode (issue 5): simulated VMs, vsock round trip, memory per idle VM', run: () => benchDevMode() },
  firecracker: { title: 'Firecracker driver (issue 6): control-plane time per VM operation against the spec-enforcing fake API server', run: () => benchFirecracker() },
  net: { title: 'host networking (issue 6): nftables ruleset for 1,000 tenants, address allocation', run: () => benchNet() },
  openclaw: { title: 'real OpenClaw (issue 7): gateway launch, hello-ok, wake, memory', run: () => benchOpenClaw() },
};

export function parseParts(value: string | undefined): LaterPart[] {
  if (value === undefined || value === 'all') return [...LATER_PARTS];
  if (value === 'none') return [];
  const parts = value.split(',').map((p) => p.trim());
  const unknown = parts.filter((p) => !(LATER_PARTS as readonly string[]).includes(p));
  if (unknown.length > 0) throw new RangeError(`--parts: unknown part(s) ${unknown.join(', ')}; choose from ${LATER_PARTS.join(', ')}, all or none`);
  return parts as LaterPart[];
}

export async function runLaterParts(parts: readonly LaterPart[], progress: (line: string) => void): Promise<PartResult[]> {
  const results: PartResult[] = [];
  for (const [i, part] of parts.entries()) {
    const { title, run } = PARTS[part];
    progress(`later part ${i + 1}/${parts.length}: ${title} ...`);
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      const out = await run();
      if (out === null) results.push({ part, title, rows: [], json: {}, unavailable: 'OpenClaw is not installed (npm run openclaw:install)', seconds: seconds() });
      else results.push({ part, title, ...out, seconds: seconds() });
    } catch (error) {
      results.push({ part, title, rows: [], json: {}, unavailable: (error as Error).message, seconds: seconds() });
    }
  }
  return results;
}

export function renderLaterParts(results: readonly PartResult[]): string {
  return results
    .map((r) => {
      if (r.unavailable !== undefined) return `${r.title}\n  not measured: ${r.unavailable}`;
      const rows: Row[] = r.rows.map((row, i) => ({ id: i === 0 ? r.part : '', label: row.label, figure: row.figure }));
      return `${r.title} (${r.seconds.toFixed(1)} s)\n${renderTable(rows)}`;
    })
    .join('\n\n');
}
