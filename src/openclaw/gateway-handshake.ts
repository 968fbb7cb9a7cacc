import type { Clock } from '../common/clock.ts';
import type { DeviceIdentity } from './device-identity.ts';
import { connectGateway, type HelloOk } from './gateway-client.ts';
import { OpenClawGatewayError } from './gateway-error.ts';

/**
 * Gateway readiness over OpenClaw's own protocol: `/readyz` answers 200 (startup done, databases
 * admitted, channels settled; `/healthz` goes green ~2.5 s earlier while connects are still
 * refused), then a WebSocket `connect` with the token and a device identity gets `hello-ok`.
 *
 * `probeGatewayOnce` is one attempt (what a VMM driver's checkReadiness does); it throws a
 * retryable OpenClawGatewayError while the gateway is starting and a final one for wrong
 * credentials. `waitForGatewayReady` repeats it until a deadline, for tools and tests.
 */

export interface HandshakeTarget {
  /** Address and port of the gateway (its tenant address and declared port). */
  host: string;
  port: number;
  token: string;
  role: 'operator';
  scopes: readonly string[];
  identity: DeviceIdentity | null;
}

export interface ProbeResult {
  /** /readyz answered 200 after this long. */
  readyz_ms: number;
  /** hello-ok arrived this long after the socket opened. */
  hello_ok_ms: number;
  total_ms: number;
  server_version: string;
  hello: HelloOk;
}

export interface ReadyResult extends ProbeResult {
  /** From the first attempt to hello-ok. */
  waited_ms: number;
  attempts: number;
}

export function gatewayUrls(target: { host: string; port: number }): { http: string; ws: string } {
  return { http: `http://${target.host}:${target.port}`, ws: `ws://${target.host}:${target.port}` };
}

/** GET with an abort on the clock's deadline. */
async function fetchStatus(url: string, clock: Clock, deadline: number): Promise<number> {
  const abort = new AbortController();
  const timer = clock.setTimeout(() => abort.abort(), Math.max(0, deadline - clock.now()));
  try {
    const response = await fetch(url, { signal: abort.signal });
    await response.arrayBuffer();
    return response.status;
  } catch (error) {
    const reason = abort.signal.aborted ? 'no answer before the deadline' : ((error as Error).cause as Error | undefined)?.message ?? (error as Error).message;
    throw new OpenClawGatewayError(abort.signal.aborted ? 'TIMEOUT' : 'UNREACHABLE', null, `GET ${url}: ${reason}`, true);
  } finally {
    clock.clearTimeout(timer);
  }
}

export async function probeGatewayOnce(target: HandshakeTarget, clock: Clock, deadline: number): Promise<ProbeResult> {
  const started = clock.now();
  const urls = gatewayUrls(target);
  const status = await fetchStatus(`${urls.http}/readyz`, clock, deadline);
  if (status !== 200) throw new OpenClawGatewayError('NOT_READY', null, `GET ${urls.http}/readyz answered ${status}, not 200 (the gateway is still starting or draining)`, true);
  const readyAt = clock.now();
  const connection = await connectGateway({ url: urls.ws, clock, deadline, token: target.token, role: target.role, scopes: target.scopes, identity: target.identity, displayName: 'mvm-actors readiness' });
  connection.close();
  return { readyz_ms: readyAt - started, hello_ok_ms: connection.timings.hello_ok_ms, total_ms: clock.now() - started, server_version: connection.hello.server.version, hello: connection.hello };
}

function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, ms));
}

/** Probes until hello-ok or `deadline`; a non-retryable failure (wrong token, pairing) ends it at once. */
export async function waitForGatewayReady(target: HandshakeTarget, options: { clock: Clock; deadline: number; intervalMs?: number }): Promise<ReadyResult> {
  const { clock, deadline } = options;
  const started = clock.now();
  let attempts = 0;
  let last: OpenClawGatewayError | null = null;
  while (clock.now() < deadline) {
    attempts += 1;
    try {
      const result = await probeGatewayOnce(target, clock, Math.min(deadline, clock.now() + 10_000));
      return { ...result, waited_ms: clock.now() - started, attempts };
    } catch (error) {
      if (!(error instanceof OpenClawGatewayError) || !error.retryable) throw error;
      last = error;
    }
    await sleep(clock, Math.min(options.intervalMs ?? 250, Math.max(0, deadline - clock.now())));
  }
  throw new OpenClawGatewayError('TIMEOUT', last?.detailsCode ?? null, `gateway at ${target.host}:${target.port} not ready before the deadline after ${attempts} attempts (last: ${last?.message ?? 'none'})`, true);
}
