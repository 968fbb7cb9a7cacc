// Embedding the actor runtime in a host agent: open a host on a data directory, apply a desired
// state, watch transitions, ask for a sleep, close. Closing never stops VMs; opening the same
// directory again restores every actor and adopts what the driver reports.
// Run it: npx tsx docs/examples/embed-host.ts
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { createFakeDriver, createHost, systemClock } from '../../src/index.ts';

const dataDir = await mkdtemp(path.join(tmpdir(), 'mvm-example-'));
const host = await createHost({
  dataDir,
  driver: createFakeDriver({ clock: systemClock }), // the dev-mode simulator and Firecracker drivers plug in here
  logger: pino({ level: 'warn' }),
});

let transitions = 0;
const unsubscribe = host.subscribe((event) => {
  if (event.type === 'transition') transitions++;
  if (event.type === 'refusal') console.log(`refused: ${event.instance_id} ${event.command} (${event.reason})`);
});

const desired = JSON.parse(await readFile(new URL('desired-state.json', import.meta.url), 'utf8'));
const result = await host.apply(desired);
console.log(`applied generation ${result.generation}: ${result.plan!.steps.length} steps`);

// Wait until no instance is in the middle of an effect.
while (!host.isSettled()) await new Promise((resolve) => setImmediate(resolve));

for (const instance of host.instances()) console.log(`${instance.instance_id.padEnd(20)} ${instance.status}${instance.status_reason ? ` (${instance.status_reason})` : ''}`);
console.log(`sleep acme-gateway-0: ${JSON.stringify(host.sleep('acme-gateway-0'))}`);
console.log(`${transitions} transitions`);

unsubscribe();
await host.close();
await rm(dataDir, { recursive: true, force: true });
