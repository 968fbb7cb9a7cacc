import { readFileSync } from 'node:fs';
import { systemClock } from '../../src/common/clock.ts';
import { loadDeviceIdentity } from '../../src/openclaw/device-identity.ts';
import { connectOperator } from '../../src/openclaw/enrolment.ts';
import type { OpenClawGatewayError } from '../../src/openclaw/gateway-error.ts';

/**
 * One operator call to a gateway from inside its VM (the tests run it with `ip netns exec`), as an
 * operator's tool in the guest would: over the VM's loopback, where OpenClaw approves the device.
 * usage: gateway-call.ts <port> <token-file | token:VALUE> <identity-file> <method> [params-json]
 * Prints {"ok":true,"payload":...} or {"ok":false,"code","detailsCode","message"}.
 */
const [port, tokenArg, identityFile, method, params] = process.argv.slice(2);
const token = tokenArg!.startsWith('token:') ? tokenArg!.slice('token:'.length) : readFileSync(tokenArg!, 'utf8').trim();
const clock = systemClock;
try {
  const operator = await connectOperator({ host: '127.0.0.1', port: Number(port), token, identity: loadDeviceIdentity(identityFile!) }, clock, clock.now() + 15_000);
  try {
    const payload = method === 'connect' ? operator.hello : await operator.request(method!, JSON.parse(params ?? '{}'), clock.now() + 30_000);
    process.stdout.write(`${JSON.stringify({ ok: true, payload })}\n`);
  } finally {
    operator.close();
  }
} catch (error) {
  const e = error as OpenClawGatewayError;
  process.stdout.write(`${JSON.stringify({ ok: false, code: e.code ?? null, detailsCode: e.detailsCode ?? null, message: e.message })}\n`);
}
process.exit(0);
