/**
 * A host in its own process, for the crash test: `node --import tsx test/host/crash-host.ts
 * <dataDir> <driverStateFile> <desired.json>`. It restores whatever dataDir holds, applies the
 * desired state, prints `transitions <n>` as instances move, and once every desired instance is
 * running prints `settled <json>` (instances and the fake hypervisor's view) and exits.
 */
import { readFileSync } from 'node:fs';
import { systemClock } from '../../src/common/clock.ts';
import { createFakeDriver } from '../../src/driver/fake-driver.ts';
import { createHost } from '../../src/host/host.ts';

const [dataDir, stateFile, desiredFile] = process.argv.slice(2) as [string, string, string];
const desired = JSON.parse(readFileSync(desiredFile, 'utf8'));
// Each driver call takes a few real milliseconds, so an apply is long enough to be killed halfway.
const driver = createFakeDriver({ clock: systemClock, stateFile, latencyMs: { prepareDrives: 2, boot: 3, checkReadiness: 2 } });
const host = await createHost({ dataDir, driver, clock: systemClock });
let transitions = 0;
host.subscribe((event) => {
  if (event.type === 'transition') process.stdout.write(`transitions ${++transitions}\n`);
});
const result = await host.apply(desired);
if (!result.applied) throw new Error(`not applied: ${result.refusal}`);
const expected = result.plan!.members.filter((m) => m.target === 'running').length;

const poll = () => {
  const running = host.instances({ status: 'running' }).length;
  if (running === expected && host.isSettled()) {
    void host.flush().then(async () => {
      const vms = Object.fromEntries(
        host.instances().map((i) => {
          const vm = driver.vm(i.instance_id);
          return [i.instance_id, { status: i.status, driver: vm.state, boots: vm.bootCount, restores: vm.restoreCount }];
        }),
      );
      const observed = (await driver.describe()).map((vm) => vm.instance_id).sort();
      process.stdout.write(`settled ${JSON.stringify({ vms, observed })}\n`);
      await host.close();
      process.exit(0);
    });
    return;
  }
  systemClock.setTimeout(poll, 10);
};
poll();
// Keep the process alive while polling (the clock's timers are unref'd).
const keepAlive = setInterval(() => undefined, 1000);
process.on('exit', () => clearInterval(keepAlive));
