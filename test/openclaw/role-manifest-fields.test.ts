import { describe, expect, it } from 'vitest';
import { loadCatalog } from '../../src/catalog/load-catalog.ts';
import { RoleManifest } from '../../src/schemas/role-manifest.ts';

/** The manifest fields this issue adds: services[].config and the openclaw-handshake readiness kind. */
describe('role manifest: generated config and OpenClaw handshake readiness', () => {
  it('the built-in gateway declares both; the worker declares a node-host config', async () => {
    const { catalog } = await loadCatalog();
    const services = [...catalog.roles.values()].flatMap((r) => r.manifest.services);
    const gateway = services.find((s) => s.config?.format === 'openclaw-gateway');
    expect(gateway?.readiness).toMatchObject({ kind: 'openclaw-handshake', port: 'gateway-ws', token_secret: 'gateway-token', client_role: 'operator', scopes: ['operator.read'] });
    expect(services.filter((s) => s.config?.format === 'openclaw-node')).toHaveLength(1);
    expect(services.filter((s) => s.config === undefined).length).toBeGreaterThan(0);
  });

  it('refuses a handshake naming an undeclared secret or port, and a config file that is a path, naming the field', async () => {
    const { catalog } = await loadCatalog();
    const role = [...catalog.roles.values()].find((r) => r.manifest.services.some((s) => s.readiness.kind === 'openclaw-handshake'))!;
    const doc = structuredClone(role.manifest) as any;
    const service = doc.services.find((s: any) => s.readiness.kind === 'openclaw-handshake');
    service.readiness.token_secret = 'no-such-secret';
    service.readiness.port = 'no-such-port';
    service.config.file = '../etc/passwd';
    const result = RoleManifest.safeParse(doc);
    expect(result.success).toBe(false);
    const messages = result.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n');
    expect(messages).toMatch(/readiness\.token_secret: readiness check names secret "no-such-secret", which is not in secrets/);
    expect(messages).toMatch(/readiness\.port: readiness check names port "no-such-port"/);
    expect(messages).toMatch(/config\.file: file must be a plain file name/);
  });

  it('refuses scopes outside OpenClaw\'s closed operator set', async () => {
    const { catalog } = await loadCatalog();
    const role = [...catalog.roles.values()].find((r) => r.manifest.services.some((s) => s.readiness.kind === 'openclaw-handshake'))!;
    const doc = structuredClone(role.manifest) as any;
    doc.services.find((s: any) => s.readiness.kind === 'openclaw-handshake').readiness.scopes = ['operator.everything'];
    expect(RoleManifest.safeParse(doc).success).toBe(false);
  });
});

describe('role manifest: openclaw-node-connected readiness', () => {
  it('the built-in node-host service uses it, and a role without a gateway dependency or the readiness handler is refused, naming the fix', async () => {
    const { catalog } = await loadCatalog();
    const role = [...catalog.roles.values()].find((r) => r.manifest.services.some((s) => s.config?.format === 'openclaw-node'))!;
    expect(role.manifest.services[0]!.readiness).toEqual({ kind: 'openclaw-node-connected', timeout_s: 120, interval_s: 2 });
    expect(RoleManifest.safeParse(role.manifest).success).toBe(true);
    const doc = structuredClone(role.manifest) as any;
    doc.depends_on = [];
    doc.vsock.handlers = doc.vsock.handlers.filter((h: string) => h !== 'readiness');
    const result = RoleManifest.safeParse(doc);
    expect(result.success).toBe(false);
    const messages = result.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n');
    expect(messages).toMatch(/services\.0\.readiness\.kind: an "openclaw-node-connected" check needs the gateway the node host dials: declare it as the first entry of depends_on/);
    expect(messages).toMatch(/services\.0\.readiness\.kind: an "openclaw-node-connected" check is run by the guest agent: add "readiness" to vsock\.handlers/);
  });
});
