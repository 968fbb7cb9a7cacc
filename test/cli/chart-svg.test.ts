import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { CLI, REPO_ROOT } from '../helpers/fixtures.ts';

/** Runs the real `mvm-actors` executable in a child process. */
function mvm(...args: string[]) {
  return execa('node', [CLI, ...args], { reject: false, cwd: REPO_ROOT });
}

/** The <title> of every node, cluster and edge (Graphviz writes "-" as &#45; and ">" as &gt;). */
function titles(svg: string): string[] {
  return [...svg.matchAll(/<title>([^<]*)<\/title>/g)].map((m) => m[1]!.replaceAll('&#45;', '-').replaceAll('&gt;', '>').replaceAll('&lt;', '<').replaceAll('&amp;', '&'));
}

describe('mvm-actors chart --format svg', () => {
  it('draws the gateway chart as a standalone SVG document, offline, with every state named', async () => {
    const { stdout, stderr, exitCode } = await mvm('chart', 'gateway', '--format', 'svg');
    expect([exitCode, stderr]).toEqual([0, '']);
    expect(stdout).toMatch(/^(<\?xml|<svg)/);
    expect(stdout.trimEnd()).toMatch(/<\/svg>$/);
    expect(stdout).toContain('xmlns="http://www.w3.org/2000/svg"');
    // Graphviz puts each node's name (the dotted state path) in <title> and its label in <text>.
    expect(titles(stdout)).toEqual(
      expect.arrayContaining([
        'pending',
        'preflight',
        'refused',
        'launching.booting',
        'launching.starting.openclaw-gateway.probing',
        'running.lifecycle.idle',
        'running.ingress.open',
        'stopped',
        'cluster_running',
        'cluster_running.connector-whatsapp',
        // Edges are titled "from->to".
        'running->stopping',
      ]),
    );
    expect(stdout).toMatch(/<text[^>]*>sleep&#45;deferred<\/text>/);
    expect(stdout).toMatch(/<text[^>]*>cmd\.stop<\/text>/);
    // Nothing points outside the document (no fonts, images or scripts to fetch).
    expect(stdout).not.toMatch(/(href|src)="https?:/);
  });

  it('draws every role without a Graphviz warning or a lost edge', async () => {
    const roles = ['builder', 'capability-imessage', 'gateway', 'worker'];
    const runs = await Promise.all(roles.map((role) => mvm('chart', role, '--format', 'svg')));
    expect(runs.map((r, i) => [roles[i], r.exitCode, r.stderr])).toEqual(roles.map((role) => [role, 0, '']));
    // Without newrank, dot reports "trouble in init_rank" on the worker chart and drops this edge.
    expect(titles(runs[3]!.stdout)).toContain('waking.starting->launching');
  });

  it('draws what the pool gets: a chart without ingress has no ingress states', async () => {
    const { stdout, exitCode } = await mvm('chart', 'gateway', '--format', 'svg', '--no-ingress');
    expect(exitCode).toBe(0);
    expect(titles(stdout)).toContain('running.lifecycle.idle');
    expect(titles(stdout).filter((t) => t.includes('ingress'))).toEqual([]);
  });
});
