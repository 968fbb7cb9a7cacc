import { SimulatedClock } from 'xstate';
import { createFakeDriver, type FakeDriver } from '../../src/driver/fake-driver.ts';
import { createHost, type Host } from '../../src/host/host.ts';
import { tempDir } from '../helpers/fixtures.ts';

export interface TestHost {
  host: Host;
  driver: FakeDriver;
  clock: SimulatedClock;
  dataDir: string;
  /** Lets pending promises and effects run (the fake driver completes on microtasks; the store commits on setImmediate). */
  settle(): Promise<void>;
  /** Advances simulated time and lets everything it triggers run. */
  advance(ms: number): Promise<void>;
  restart(): Promise<TestHost>;
}

async function flushTurns(times = 5): Promise<void> {
  for (let i = 0; i < times; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

export async function aTestHost(options: { dataDir?: string; driver?: FakeDriver; clock?: SimulatedClock; roles?: string } = {}): Promise<TestHost> {
  const clock = options.clock ?? new SimulatedClock();
  if (!options.clock) clock.set(1_764_000_000_000);
  const driver = options.driver ?? createFakeDriver({ clock });
  const dataDir = options.dataDir ?? (await tempDir('mvm-host-'));
  const host = await createHost({ dataDir, driver, clock, ...(options.roles ? { roles: options.roles } : {}) });
  const settle = async () => {
    for (let i = 0; i < 50; i++) {
      await flushTurns(2);
      if (host.isSettled()) break;
    }
    await flushTurns(2);
    await host.flush();
  };
  const self: TestHost = {
    host,
    driver,
    clock,
    dataDir,
    settle,
    advance: async (ms) => {
      clock.increment(ms);
      await settle();
    },
    restart: async () => {
      await host.close();
      return aTestHost({ dataDir, driver, clock, ...(options.roles ? { roles: options.roles } : {}) });
    },
  };
  return self;
}
