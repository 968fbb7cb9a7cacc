/**
 * Child process for the allocation crash test: allocates addresses in a loop on a real store and
 * prints each one only once the store has flushed it (an address the host would now use), until
 * the parent SIGKILLs it. Usage: node --import tsx allocate-child.ts <store path> <start index>
 */
import { systemClock } from '../../src/common/clock.ts';
import { AddressAllocator } from '../../src/net/address-allocator.ts';
import { openStore } from '../../src/store/lmdb-store.ts';

const [file, start] = process.argv.slice(2) as [string, string];
const store = openStore({ path: file, clock: systemClock });
const allocator = new AddressAllocator(store);
const tenants = [
  { tenant_id: 'a', tenant_net_id: 1, ipv4_subnet: '10.1.0.0/20' },
  { tenant_id: 'b', tenant_net_id: 400, ipv4_subnet: '10.2.0.0/20' },
];
for (let n = Number(start); n < Number(start) + 3000; n++) {
  // A burst of allocations per batch, some released again, as an apply that creates and destroys.
  const made = [0, 1, 2].map((k) => {
    const id = `i${n}-${k}`;
    return { id, network: allocator.allocate(id, tenants[(n + k) % 2]!, 'p') };
  });
  allocator.release(made[2]!.id);
  await store.flush();
  for (const m of made.slice(0, 2)) process.stdout.write(`${JSON.stringify({ id: m.id, ipv4: m.network.ipv4, cid: m.network.vsock_cid })}\n`);
}
await store.close();
