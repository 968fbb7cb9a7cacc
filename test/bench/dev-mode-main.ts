/** Runs the dev-mode benchmark alone: `npx tsx test/bench/dev-mode-main.ts [--json]`. */
import { benchDevMode } from './dev-mode.ts';

const { rows, json } = await benchDevMode();
if (process.argv.includes('--json')) {
  process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
} else {
  const width = Math.max(...rows.map((r) => r.label.length));
  for (const row of rows) process.stdout.write(`${row.label.padEnd(width)}  ${row.figure}\n`);
}
