/**
 * Writes machines/golden/<role>.json: the chart generated for each built-in role with its full
 * options (ingress where allowed, every connector). `npm run charts` after changing the composer
 * or a role; test/machines/ fails when a golden file is stale, so chart changes show in review.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { composeInstanceChart, fullOptions } from '../../machines/compose-instance-chart.ts';
import { loadCatalogStrict } from '../../src/catalog/load-catalog.ts';

export const GOLDEN_DIR = fileURLToPath(new URL('../../machines/golden', import.meta.url));

export function goldenText(chart: unknown): string {
  return `${JSON.stringify(chart, null, 2)}\n`;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const catalog = await loadCatalogStrict();
  await mkdir(GOLDEN_DIR, { recursive: true });
  for (const [name, role] of catalog.roles) {
    await writeFile(path.join(GOLDEN_DIR, `${name}.json`), goldenText(composeInstanceChart(role.manifest, fullOptions(role.manifest))));
  }
  console.log(`wrote ${catalog.roles.size} golden charts to ${path.relative(process.cwd(), GOLDEN_DIR)}`);
}
