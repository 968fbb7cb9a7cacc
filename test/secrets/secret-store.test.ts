import { stat } from 'node:fs/promises';
import path from 'node:path';
import { SimulatedClock } from 'xstate';
import { afterEach, describe, expect, it } from 'vitest';
import { SecretStore } from '../../src/secrets/secret-store.ts';
import { openStore, type Store } from '../../src/store/lmdb-store.ts';
import { tempDir } from '../helpers/fixtures.ts';

const opened: Store[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

async function aStore() {
  const dir = await tempDir('mvm-secrets-');
  const clock = new SimulatedClock();
  clock.set(1_000);
  const records = openStore({ path: path.join(dir, 'state.lmdb'), clock });
  opened.push(records);
  const reopen = async () => {
    await records.close();
    opened.splice(opened.indexOf(records), 1);
    const again = openStore({ path: path.join(dir, 'state.lmdb'), clock });
    opened.push(again);
    return new SecretStore(again, { clock });
  };
  return { dir, clock, records, reopen, store: new SecretStore(records, { clock, random: (n) => Buffer.alloc(n, 7) }) };
}

const token = { name: 'gateway-token', description: 'token', generate: 'token' as const };
const operatorSecret = { name: 'imessage-credentials', description: 'creds', generate: null };

describe('secret store', () => {
  it('keeps values in the host environment, whose files only the owner can read', async () => {
    const { dir, records, store, reopen } = await aStore();
    store.put('acme', 'telegram-bot-token', '123:abc');
    await records.flush();
    expect((await stat(path.join(dir, 'state.lmdb'))).mode & 0o777).toBe(0o600);
    expect((await reopen()).reveal('acme', 'telegram-bot-token')).toBe('123:abc');
  });

  it('raises the tenant epoch with every change and lists names and epochs, never values', async () => {
    const { store } = await aStore();
    expect(store.epoch('acme')).toBe(0);
    expect(store.put('acme', 'a', 'one')).toBe(1);
    expect(store.put('acme', 'b', 'two')).toBe(2);
    expect(store.delete('acme', 'a')).toBe(true);
    expect(store.epoch('acme')).toBe(3);
    expect(store.delete('acme', 'a')).toBe(false);
    expect(store.epoch('acme')).toBe(3);
    expect(store.delete('acme', 'never-there')).toBe(false);
    expect(store.epoch('acme')).toBe(3);
    expect(store.list('acme')).toEqual([{ name: 'b', epoch: 2, updated_at: 1_000, state: 'present' }]);
    expect(JSON.stringify(store.list('acme'))).not.toContain('two');
  });

  it('keeps tenants apart', async () => {
    const { store } = await aStore();
    store.put('acme', 'a', 'acme-value');
    expect(store.reveal('globex', 'a')).toBeUndefined();
    expect(store.epoch('globex')).toBe(0);
  });

  it('mints a token on first need, once, and never an operator-supplied secret', async () => {
    const { store } = await aStore();
    expect(store.ensure('acme', token)).toBe(true);
    expect(store.reveal('acme', 'gateway-token')).toBe(Buffer.alloc(32, 7).toString('base64url'));
    expect(store.ensure('acme', token)).toBe(true);
    expect(store.epoch('acme')).toBe(1);
    expect(store.ensure('acme', operatorSecret)).toBe(false);
  });

  it('mints ahead of need for many tenants at once, skipping what exists or is revoked', async () => {
    const { store } = await aStore();
    store.put('acme', 'gateway-token', 'kept');
    store.revoke('globex', 'gateway-token');
    store.ensureAll(new Map([['acme', [token]], ['globex', [token]], ['initech', [token, operatorSecret]]]));
    expect(store.reveal('acme', 'gateway-token')).toBe('kept');
    expect(store.has('globex', 'gateway-token')).toBe(false);
    expect(store.has('initech', 'gateway-token')).toBe(true);
    expect(store.has('initech', 'imessage-credentials')).toBe(false);
  });

  it('does not mint a revoked secret again until an operator puts one', async () => {
    const { store } = await aStore();
    store.ensure('acme', token);
    expect(store.revoke('acme', 'gateway-token')).toBe(true);
    expect(store.ensure('acme', token)).toBe(false);
    expect(store.list('acme')).toEqual([expect.objectContaining({ name: 'gateway-token', state: 'revoked' })]);
    store.put('acme', 'gateway-token', 'new');
    expect(store.ensure('acme', token)).toBe(true);
  });

  it('reads its state back after a restart', async () => {
    const { records, store, reopen } = await aStore();
    store.put('acme', 'a', 'one');
    store.revoke('acme', 'gateway-token');
    await records.flush();
    const again = await reopen();
    expect(again.reveal('acme', 'a')).toBe('one');
    expect(again.epoch('acme')).toBe(2);
    expect(again.ensure('acme', token)).toBe(false);
  });

  it.each(['../x', 'A', ''])('refuses tenant id %j', async (bad) => {
    const { store } = await aStore();
    expect(() => store.put(bad, 'a', 'v')).toThrow();
  });

  it.each(['../x', 'a/b', ''])('refuses secret name %j', async (bad) => {
    const { store } = await aStore();
    expect(() => store.put('acme', bad, 'v')).toThrow();
  });
});
