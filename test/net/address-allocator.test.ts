import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { systemClock } from '../../src/common/clock.ts';
import { AddressAllocator } from '../../src/net/address-allocator.ts';
import { openStore } from '../../src/store/lmdb-store.ts';
import { REPO_ROOT, tempDir } from '../helpers/fixtures.ts';

const CHILD = path.join(REPO_ROOT, 'test/net/allocate-child.ts');
const acme = { tenant_id: 'acme', tenant_net_id: 300, ipv4_subnet: '10.30.0.0/24' };

describe('persisted address allocation', () => {
  it('survives a reopen: the same identities come back, new ones avoid them, releases free them', async () => {
    const file = path.join(await tempDir('mvm-alloc-'), 'state.lmdb');
    const store = openStore({ path: file, clock: systemClock });
    const first = new AddressAllocator(store);
    const a = first.allocate('acme-gw-0', acme, 'gw');
    const b = first.allocate('acme-wk-0', acme, 'wk');
    first.allocate('acme-wk-1', acme, 'wk');
    first.release('acme-wk-1');
    await store.close();

    const reopened = openStore({ path: file, clock: systemClock });
    const second = new AddressAllocator(reopened);
    expect(second.loadReport).toEqual({ loaded: 2, skipped: [] });
    expect(second.allocate('acme-gw-0', acme, 'gw')).toEqual(a);
    expect(second.get('acme-wk-0')).toMatchObject({ pool_id: 'wk', offset: 3, network: b });
    expect(second.allocate('acme-wk-2', acme, 'wk')).toMatchObject({ ipv4: '10.30.0.4' });
    // A corrupt record is skipped and reported, never trusted.
    reopened.putMeta('net-alloc/bogus', { schema_version: 1, instance_id: 'bogus' });
    await reopened.close();
    const third = new AddressAllocator(openStore({ path: file, clock: systemClock }));
    expect(third.loadReport.loaded).toBe(3);
    expect(third.loadReport.skipped).toEqual([{ key: 'net-alloc/bogus', reason: expect.stringMatching(/tenant_id/) }]);
  });

  it('a process SIGKILLed while allocating: after reopening, nothing it used is handed out again', async () => {
    const file = path.join(await tempDir('mvm-alloc-crash-'), 'state.lmdb');
    const used: { id: string; ipv4: string; cid: number }[] = [];
    for (const start of [0, 10_000]) {
      const child = execa('node', ['--import', 'tsx', CHILD, file, String(start)], { cwd: REPO_ROOT, reject: false, buffer: false });
      let pending = '';
      await new Promise<void>((resolve) => {
        child.stdout!.on('data', (chunk: Buffer) => {
          pending += String(chunk);
          const lines = pending.split('\n');
          pending = lines.pop()!;
          for (const line of lines) used.push(JSON.parse(line));
          if (used.length >= (start === 0 ? 150 : 300)) {
            child.kill('SIGKILL');
            resolve();
          }
        });
        void child.then(() => resolve());
      });
      const result = await child;
      expect(result.signal, 'the child must be killed mid-run, not finish').toBe('SIGKILL');
    }

    const store = openStore({ path: file, clock: systemClock });
    const allocator = new AddressAllocator(store);
    expect(allocator.loadReport.skipped).toEqual([]);
    for (const u of used) expect(allocator.get(u.id)?.network.ipv4, u.id).toBe(u.ipv4);
    const more = Array.from({ length: 300 }, (_, n) => allocator.allocate(`after-${n}`, n % 2 ? { tenant_id: 'a', tenant_net_id: 1, ipv4_subnet: '10.1.0.0/20' } : { tenant_id: 'b', tenant_net_id: 400, ipv4_subnet: '10.2.0.0/20' }, 'p'));
    const all = allocator.list();
    expect(new Set(all.map((r) => `${r.tenant_id}/${r.network.ipv4}`)).size).toBe(all.length);
    expect(new Set(all.map((r) => r.network.vsock_cid)).size).toBe(all.length);
    expect(new Set(all.map((r) => r.network.mac)).size).toBe(all.length);
    expect(all.length).toBeGreaterThanOrEqual(used.length + more.length);
    await store.close();
  }, 60_000);
});
