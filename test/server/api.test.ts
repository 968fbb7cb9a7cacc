import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { WebSocket } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { createServer } from '../../src/server/create-server.ts';
import { aDesiredState } from '../helpers/fixtures.ts';
import { aTestHost, type TestHost } from '../host/helpers.ts';
import { fleetDesiredState } from '../bench/fleet.ts';

const TOKEN = 'test-token-0123456789abcdef';
const auth = { authorization: `Bearer ${TOKEN}` };

let t: TestHost | undefined;
let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  await t?.host.close();
  app = undefined;
  t = undefined;
});

async function server(): Promise<{ t: TestHost; app: FastifyInstance }> {
  t = await aTestHost();
  app = await createServer(t.host, { token: TOKEN });
  return { t, app };
}

async function applied() {
  const s = await server();
  const res = await s.app.inject({ method: 'PUT', url: '/v1/desired-state', headers: auth, payload: aDesiredState() });
  expect(res.statusCode).toBe(200);
  await s.t.settle();
  return s;
}

describe('API: auth and errors', () => {
  it('serves /healthz without a token and refuses /v1 without one, in the error envelope', async () => {
    const { app } = await server();
    expect((await app.inject('/healthz')).json()).toEqual({ status: 'ok', generation: -1 });
    const res = await app.inject('/v1/instances');
    expect(res.statusCode).toBe(401);
    expect(res.json()).toMatchObject({ statusCode: 401, code: 'MVM_ERR_UNAUTHORIZED', message: expect.stringContaining('Authorization: Bearer') });
    const wrong = await app.inject({ url: '/v1/instances', headers: { authorization: 'Bearer nope' } });
    expect(wrong.statusCode).toBe(401);
  });

  it('answers unknown routes with a 404 envelope', async () => {
    const { app } = await server();
    expect((await app.inject({ url: '/v1/nope', headers: auth })).json()).toMatchObject({ statusCode: 404, code: 'MVM_ERR_NOT_FOUND' });
  });

  it('publishes an OpenAPI document generated from the route schemas', async () => {
    const { app } = await server();
    const doc = (await app.inject('/openapi.json')).json();
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/desired-state', '/v1/plan', '/v1/instances', '/v1/instances/{id}', '/v1/instances/{id}/sleep', '/v1/tenants/{tenant}/secrets/{name}', '/v1/roles/{role}/chart']));
  });
});

describe('API: desired state', () => {
  it('applies a valid document and returns it', async () => {
    const { app } = await applied();
    const res = await app.inject({ url: '/v1/desired-state', headers: auth });
    expect(res.json()).toMatchObject({ generation: 7, document: { node_id: 'kvm-host-01' } });
  });

  it('rejects an invalid document with 400 and every problem with its path', async () => {
    const { app } = await server();
    const doc = aDesiredState();
    doc.schema_version = 2;
    doc.tenants[0].tenant_id = 'Acme';
    const res = await app.inject({ method: 'PUT', url: '/v1/desired-state', headers: auth, payload: doc });
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('MVM_ERR_VALIDATION');
    expect(res.json().issues.map((i: { path: string }) => i.path)).toEqual(['schema_version', 'tenants[0].tenant_id']);
  });

  it('rejects malformed JSON with a 400 envelope', async () => {
    const { app } = await server();
    const res = await app.inject({ method: 'PUT', url: '/v1/desired-state', headers: { ...auth, 'content-type': 'application/json' }, payload: '{"a": ' });
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('MVM_ERR_VALIDATION');
  });

  it('refuses a stale generation with 409', async () => {
    const { app } = await applied();
    const older = aDesiredState();
    older.generation = 3;
    const res = await app.inject({ method: 'PUT', url: '/v1/desired-state', headers: auth, payload: older });
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ code: 'MVM_ERR_STALE_GENERATION', reason: 'stale-generation:3<7' });
  });

  it('plans without applying', async () => {
    const { app, t } = await server();
    const res = await app.inject({ method: 'POST', url: '/v1/plan', headers: auth, payload: aDesiredState() });
    expect(res.statusCode).toBe(200);
    expect(res.json().steps[0]).toMatchObject({ op: 'create' });
    expect(t.host.instances()).toEqual([]);
  });

  it('limits the body size', async () => {
    t = await aTestHost();
    app = await createServer(t.host, { token: TOKEN, bodyLimit: 1024 });
    const res = await app.inject({ method: 'PUT', url: '/v1/desired-state', headers: auth, payload: aDesiredState() });
    expect(res.statusCode).toBe(413);
    expect(res.json().code).toBe('MVM_ERR_BODY_TOO_LARGE');
  });
});

describe('API: instances and commands', () => {
  it('lists instances with filters and shows one with its journal', async () => {
    const { app } = await applied();
    const all = (await app.inject({ url: '/v1/instances', headers: auth })).json().instances;
    expect(all).toHaveLength(9);
    const workers = (await app.inject({ url: '/v1/instances?tenant=acme&role=worker&state=running', headers: auth })).json().instances;
    expect(workers.map((i: { instance_id: string }) => i.instance_id)).toHaveLength(5);
    const one = (await app.inject({ url: '/v1/instances/acme-gateway-0', headers: auth })).json();
    expect(one).toMatchObject({ instance_id: 'acme-gateway-0', status: 'running', role: 'gateway' });
    expect(one.journal.map((e: { to: string }) => e.to)).toEqual(['pending', 'preflight', 'provisioning', 'booting', 'starting-services', 'running']);
    expect((await app.inject({ url: '/v1/instances/nope-0', headers: auth })).statusCode).toBe(404);
  });

  it('accepts a command with 202 and refuses the sleep floor with 409 and its reason', async () => {
    const { app } = await applied();
    const refused = await app.inject({ method: 'POST', url: '/v1/instances/acme-gateway-0/sleep', headers: auth });
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: 'MVM_ERR_REFUSED', reason: 'sleep-floor:gateway:1' });
    const stop = await app.inject({ method: 'POST', url: '/v1/instances/acme-workers-0/stop', headers: auth });
    expect(stop.statusCode).toBe(202);
    expect(stop.json()).toMatchObject({ accepted: true, instance_id: 'acme-workers-0', command: 'stop' });
  });

  it('validates path parameters with the path of the problem', async () => {
    const { app } = await server();
    const res = await app.inject({ method: 'POST', url: '/v1/instances/Bad..Id/wake', headers: auth });
    expect(res.statusCode).toBe(400);
    expect(res.json().issues[0].path).toBe('params.id');
  });
});

describe('API: secrets are write-only', () => {
  it('stores a secret, lists names and epochs only, and never returns a value', async () => {
    const { app } = await applied();
    const put = await app.inject({ method: 'PUT', url: '/v1/tenants/acme/secrets/telegram-bot-token', headers: auth, payload: { value: 'tg-very-secret' } });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toMatchObject({ tenant_id: 'acme', name: 'telegram-bot-token' });
    const bodies = await Promise.all(
      ['/v1/tenants/acme/secrets', '/v1/tenants/acme', '/v1/instances/acme-gateway-0', '/v1/instances', '/v1/tenants'].map(async (url) => (await app.inject({ url, headers: auth })).body),
    );
    for (const body of bodies) expect(body).not.toContain('tg-very-secret');
    expect(JSON.parse(bodies[0]!).secrets.map((s: { name: string }) => s.name)).toEqual(['gateway-token', 'telegram-bot-token']);
    const del = await app.inject({ method: 'DELETE', url: '/v1/tenants/acme/secrets/telegram-bot-token', headers: auth });
    expect(del.statusCode).toBe(200);
    expect((await app.inject({ method: 'DELETE', url: '/v1/tenants/acme/secrets/telegram-bot-token', headers: auth })).statusCode).toBe(404);
  });

  it('rejects an empty secret value', async () => {
    const { app } = await server();
    const res = await app.inject({ method: 'PUT', url: '/v1/tenants/acme/secrets/x', headers: auth, payload: { value: '' } });
    expect(res.statusCode).toBe(400);
    expect(res.json().issues[0].path).toBe('body.value');
  });
});

describe('API: roles', () => {
  it('lists roles and draws a chart', async () => {
    const { app } = await server();
    expect((await app.inject({ url: '/v1/roles', headers: auth })).json().roles.map((r: { name: string }) => r.name)).toEqual(['builder', 'capability-imessage', 'gateway', 'worker']);
    expect((await app.inject({ url: '/v1/roles/gateway', headers: auth })).json().manifest_hash).toMatch(/^sha256:/);
    expect((await app.inject({ url: '/v1/roles/gateway/chart?format=dot', headers: auth })).body).toMatch(/^digraph/);
    expect((await app.inject({ url: '/v1/roles/gateway/chart', headers: auth })).json().id).toBe('vm');
    expect((await app.inject({ url: '/v1/roles/pager', headers: auth })).statusCode).toBe(404);
  });
});

describe('API: metrics', () => {
  it('exposes Prometheus text with instances by role and status', async () => {
    const { app } = await applied();
    const text = (await app.inject('/metrics')).body;
    expect(text).toContain('mvm_instances{role="worker",status="running"} 5');
    expect(text).toMatch(/^mvm_transitions_total \d+$/m);
    expect(text).toContain('mvm_desired_generation 7');
  });
});

describe('API: events WebSocket (real sockets)', () => {
  async function listening() {
    const s = await applied();
    await s.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = s.app.server.address() as AddressInfo;
    return { ...s, url: `ws://127.0.0.1:${port}` };
  }

  const markers: number[] = [];
  function collect(ws: WebSocket) {
    const received: { seq: number; instance_id: string; to: string | null }[] = [];
    ws.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString());
      if (message.type === 'journal') received.push(message.entry);
      else if (message.type === 'replayed') markers.push(message.seq);
    });
    return received;
  }

  async function until(check: () => boolean, what: string) {
    for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(check(), what).toBe(true);
  }

  it('replays the journal after since= and then streams live entries', async () => {
    const { url, t } = await listening();
    const total = t.host.journal().length;
    const ws = new WebSocket(`${url}/v1/events?since=5`, { headers: auth });
    const received = collect(ws);
    await until(() => received.length === total - 5, 'the replay arrives');
    expect(received.map((e) => e.seq)).toEqual(Array.from({ length: total - 5 }, (_, i) => i + 6));
    await until(() => markers.length === 1, 'the end of the replay is marked');
    expect(markers).toEqual([total]);
    t.host.stop('acme-workers-1');
    await t.settle();
    await until(() => received.length === total - 3, 'the live entries arrive');
    expect(received.slice(-2).map((e) => [e.instance_id, e.to])).toEqual([
      ['acme-workers-1', 'stopping'],
      ['acme-workers-1', 'stopped'],
    ]);
    ws.close();
  });

  it('accepts the token as ?token= (browsers cannot set headers on sockets) and refuses a socket without it', async () => {
    const { url } = await listening();
    const ok = new WebSocket(`${url}/v1/events?since=0&token=${TOKEN}`);
    await new Promise((resolve, reject) => ok.once('open', resolve).once('error', reject));
    ok.close();
    const refused = new WebSocket(`${url}/v1/events`);
    const status = await new Promise<number>((resolve) => refused.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(401);
  });

  it('disconnects a client that cannot keep up with close code 4008 instead of buffering without bound', async () => {
    t = await aTestHost();
    // A journal of tens of thousands of entries: more than the kernel's socket buffers hold.
    const catalog = t.host.catalog;
    expect((await t.host.apply(fleetDesiredState(catalog, { tenants: 300, gatewaysRunning: 1, workersRunning: 9 }))).applied).toBe(true);
    await t.settle();
    app = await createServer(t.host, { token: TOKEN, maxEventBacklog: 64 * 1024 });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/events?since=0`, { headers: auth });
    // Read nothing for a while: the server's backlog grows past the limit and it gives up.
    ws.once('upgrade', () => ws.pause());
    const closed = new Promise<number>((resolve) => ws.once('close', (c) => resolve(c)));
    await new Promise((r) => setTimeout(r, 1_000));
    ws.resume();
    expect(await closed).toBe(4008);
});
});
