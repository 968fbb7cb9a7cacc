import { afterAll, describe, expect, it } from 'vitest';
import { ephemeralDeviceIdentity } from '../../src/openclaw/device-identity.ts';
import { connectOperator, gatewayArgs } from '../../src/openclaw/enrolment.ts';
import { waitForGatewayReady } from '../../src/openclaw/gateway-handshake.ts';
import { clock, freePort, Harness, instanceDirs, ourListeners, putSecret, writeConfig } from './openclaw-harness.ts';

/**
 * A pool enabling Telegram with its token file present: the real gateway reads the token from
 * the secrets drive (tokenSource "tokenFile", tokenStatus "available"). There is no network, so
 * the channel cannot reach Telegram, and such a gateway can hang for minutes in shutdown: the
 * stop is bounded and ends in SIGKILL.
 */

const harness = new Harness();
let port = 0;

afterAll(async () => {
  await harness.stopAll(3_000);
  const left = await ourListeners(port, harness.parent);
  harness.cleanup();
  expect(left, `processes of this test still listen on ${port}`).toEqual([]);
}, 60_000);

/** Every object in a JSON value that has the given key. */
function objectsWith(value: unknown, key: string): Record<string, unknown>[] {
  if (value === null || typeof value !== 'object') return [];
  const own = !Array.isArray(value) && key in value ? [value as Record<string, unknown>] : [];
  return [...own, ...Object.values(value).flatMap((v) => objectsWith(v, key))];
}

describe('Telegram connector with its token file', () => {
  it('is reported by OpenClaw as tokenSource tokenFile, tokenStatus available', async () => {
    port = await freePort();
    const dirs = instanceDirs(harness.parent, 'acme-gateway-tg');
    putSecret(dirs, 'gateway-token', 'tg-test-gateway-token');
    putSecret(dirs, 'telegram-bot-token', '123456789:AAFakeTokenForTestsOnly');
    const rendered = writeConfig(dirs, {
      format: 'openclaw-gateway',
      tenant_id: 'acme',
      instance_id: 'acme-gateway-tg',
      listen: { address: '127.0.0.1', port },
      token_secret: 'gateway-token',
      connectors: [{ name: 'telegram', secrets: ['telegram-bot-token'], state_on_data: false }],
      secrets_present: ['gateway-token', 'telegram-bot-token'],
      plugins_available: [],
    });
    expect(rendered.connectors).toEqual([{ name: 'telegram', enabled: true, reason: null }]);
    harness.start(dirs, gatewayArgs(), 'gateway');
    const identity = ephemeralDeviceIdentity();
    await waitForGatewayReady({ host: '127.0.0.1', port, token: 'tg-test-gateway-token', role: 'operator', scopes: ['operator.read'], identity }, { clock, deadline: clock.now() + 150_000 });
    const operator = await connectOperator({ host: '127.0.0.1', port, token: 'tg-test-gateway-token', identity }, clock, clock.now() + 15_000);
    try {
      const status = await operator.request('channels.status', {}, clock.now() + 20_000);
      // The per-account entry (accountId "default") carries tokenStatus; the channel summary only tokenSource.
      const accounts = objectsWith(status, 'tokenSource').filter((a) => a.accountId === 'default');
      expect(accounts, JSON.stringify(status).slice(0, 2000)).toHaveLength(1);
      expect(accounts[0]).toMatchObject({ tokenSource: 'tokenFile', tokenStatus: 'available', enabled: true });
    } finally {
      operator.close();
    }
  }, 200_000);
});
