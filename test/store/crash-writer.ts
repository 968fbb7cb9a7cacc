/**
 * Child process for the crash test in lmdb-store.test.ts: writes journal entries, snapshots and a
 * meta record in a loop through the real store, and after each `flush()` resolves prints
 * `ack <seq> <iteration>` (seq: the last journal entry of that iteration). The test SIGKILLs it
 * mid-stream and checks that every acknowledged write survived.
 *
 * Usage: tsx test/store/crash-writer.ts <store-dir>
 */
import { systemClock } from '../../src/common/clock.ts';
import { openStore } from '../../src/store/lmdb-store.ts';
import { META_KEYS } from '../../src/store/keys.ts';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: crash-writer.ts <store-dir>\n');
  process.exit(2);
}

// Never outlive a test that died before killing us.
const GIVE_UP_AFTER_MS = 20_000;
const started = systemClock.now();

const store = openStore({ path: dir, clock: systemClock });
process.stdout.write(`pid ${process.pid}\n`);

for (let i = 1; systemClock.now() - started < GIVE_UP_AFTER_MS; i++) {
  const instanceId = `vm-${i % 7}`;
  let last = 0;
  // 1-5 entries per iteration, so batches vary in size.
  for (let k = 0; k <= i % 5; k++) {
    last = store.appendJournal({
      at: systemClock.now(),
      instance_id: instanceId,
      tenant_id: 'acme',
      kind: 'transition',
      from: 'running',
      to: 'running',
      event: 'TICK',
      detail: { i, k, payload: 'x'.repeat(200) },
    });
  }
  store.putSnapshot({
    schema_version: 1,
    kind: 'instance',
    id: instanceId,
    tenant_id: 'acme',
    chart_version: 'crash-test',
    manifest_hash: null,
    snapshot: { status: 'active', value: 'running', context: { i, last_seq: last }, children: {} },
    updated_at: systemClock.now(),
  });
  store.putMeta(META_KEYS.desiredState, { generation: i, applied_at: systemClock.now(), document: { i } });
  await store.flush();
  // Pipes are written synchronously on Linux: once this returns, the parent can read the ack.
  process.stdout.write(`ack ${last} ${i}\n`);
  // An unacknowledged write that rides in the next iteration's batch.
  store.appendJournal({ at: systemClock.now(), instance_id: instanceId, tenant_id: 'acme', kind: 'observation', from: null, to: null, event: 'AFTER_ACK', detail: {} });
}
await store.close();
