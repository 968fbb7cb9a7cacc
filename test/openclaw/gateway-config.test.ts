import { execa } from 'execa';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadCatalog } from '../../src/catalog/load-catalog.ts';
import { openclawConfigInput, renderOpenClawConfig, type OpenClawConfigInput } from '../../src/openclaw/gateway-config.ts';
import { openclawServiceEnv } from '../../src/openclaw/service-env.ts';
import { Harness, instanceDirs, putSecret, serviceEnv, writeConfig } from './openclaw-harness.ts';

/** Config generation (pure) and, for the generated files, `openclaw config validate` of the real package. */

const mounts = { data: '/data', secrets: '/run/secrets', config: '/etc/mvm-config', tmp: '/tmp/mvm' };
const base: OpenClawConfigInput = {
  format: 'openclaw-gateway',
  tenant_id: 'acme',
  instance_id: 'acme-gateway-0',
  mounts,
  config_file: 'openclaw.json',
  listen: { address: '10.20.0.2', port: 18789 },
  token_secret: 'gateway-token',
  connectors: [
    { name: 'telegram', secrets: ['telegram-bot-token'], state_on_data: false },
    { name: 'whatsapp', secrets: [], state_on_data: true },
  ],
  secrets_present: ['gateway-token', 'telegram-bot-token'],
  plugins_available: [],
};

const harness = new Harness();
afterAll(() => harness.cleanup());

let validations = 0;
async function validate(input: Omit<OpenClawConfigInput, 'mounts' | 'config_file'>, secrets: Record<string, string>) {
  const dirs = instanceDirs(harness.parent, `validate-${++validations}`);
  for (const [name, value] of Object.entries(secrets)) putSecret(dirs, name, value);
  const rendered = writeConfig(dirs, input);
  const result = await execa(harness.install.node, [harness.install.entry, 'config', 'validate'], { env: serviceEnv(harness.install, dirs), reject: false, extendEnv: false });
  return { rendered, result, dirs };
}

describe('generated openclaw.json', () => {
  it('binds the tenant address on the declared port with file-provided token auth, state on /data, outbound calls off, the instance named in env.vars', () => {
    const { config } = renderOpenClawConfig(base) as { config: any };
    expect(config.gateway).toMatchObject({ mode: 'local', port: 18789, bind: 'custom', customBindHost: '10.20.0.2', auth: { mode: 'token', token: { source: 'file', provider: 'mvmgatewaytoken', id: 'value' } } });
    expect(config.gateway.nodes.pairing.sshVerify).toBe(false);
    expect(config.secrets.providers.mvmgatewaytoken).toEqual({ source: 'file', path: '/run/secrets/gateway-token', mode: 'singleValue' });
    expect(config.agents.defaults.workspace).toBe('/data/openclaw/workspace');
    expect(config.logging.file).toBe('/data/openclaw/logs/openclaw.log');
    expect(config.update).toEqual({ checkOnStart: false });
    expect(config.discovery).toEqual({ mdns: { mode: 'off' } });
    expect(config.models).toEqual({ catalogRefresh: { enabled: false } });
    // No config_version: a new version that changes nothing the gateway reads must not change its file (and restart it).
    expect(config.env.vars).toEqual({ MVM_TENANT_ID: 'acme', MVM_INSTANCE_ID: 'acme-gateway-0' });
    expect(config.plugins.entries['device-pair'].config.publicUrl).toBe('ws://10.20.0.2:18789');
  });

  it('writes exactly the enabled connectors whose secrets are present, and names why the others are off', () => {
    const withTelegram = renderOpenClawConfig(base) as { config: any; connectors: unknown };
    expect(withTelegram.config.channels).toEqual({ telegram: { enabled: true, tokenFile: '/run/secrets/telegram-bot-token', dmPolicy: 'pairing' } });
    expect(withTelegram.connectors).toEqual([
      { name: 'telegram', enabled: true, reason: null },
      { name: 'whatsapp', enabled: false, reason: 'plugin-not-in-image:whatsapp' },
    ]);
    const noSecret = renderOpenClawConfig({ ...base, secrets_present: ['gateway-token'] }) as { config: any; connectors: unknown };
    expect(noSecret.config.channels).toBeUndefined();
    expect(noSecret.connectors).toContainEqual({ name: 'telegram', enabled: false, reason: 'missing-secret:telegram-bot-token' });
    const withPlugin = renderOpenClawConfig({ ...base, plugins_available: ['whatsapp'] }) as { config: any };
    expect(Object.keys(withPlugin.config.channels)).toEqual(['telegram', 'whatsapp']);
    expect(withPlugin.config.plugins.entries.whatsapp).toEqual({ enabled: true });
    const notEnabled = renderOpenClawConfig({ ...base, connectors: [] }) as { config: any; connectors: unknown[] };
    expect(notEnabled.config.channels).toBeUndefined();
    expect(notEnabled.connectors).toEqual([]);
  });

  it('is deterministic and refuses a gateway input without an address or token secret, naming the field', () => {
    expect(renderOpenClawConfig(base).text).toBe(renderOpenClawConfig(structuredClone(base)).text);
    expect(() => renderOpenClawConfig({ ...base, listen: null })).toThrow(/listen/);
    expect(() => renderOpenClawConfig({ ...base, token_secret: null })).toThrow(/token_secret/);
    expect(() => renderOpenClawConfig({ ...base, listen: { address: 'gateway.local', port: 1 } })).toThrow(/listen.address must be an IPv4/);
  });

  it('is chosen by the manifest field services[].config, with the port, drives and token secret the manifest declares', async () => {
    const { catalog } = await loadCatalog();
    const rendered = [...catalog.roles.values()].flatMap((role) =>
      role.manifest.services.map((service) => ({
        service: service.name,
        input: openclawConfigInput({ manifest: role.manifest, service, enabledConnectors: role.manifest.connectors.map((c) => c.name), tenant_id: 't', instance_id: 't-p-0', address: '10.0.0.2', secrets_present: [], plugins_available: [], tmp: '/tmp/x' }),
      })),
    );
    const withConfig = rendered.filter((r) => r.input !== null);
    expect(withConfig.map((r) => [r.service, r.input!.format]).sort()).toEqual([
      ['openclaw-gateway', 'openclaw-gateway'],
      ['openclaw-node', 'openclaw-node'],
    ]);
    const gateway = withConfig.find((r) => r.input!.format === 'openclaw-gateway')!.input!;
    expect(gateway.listen).toEqual({ address: '10.0.0.2', port: 18789 });
    expect(gateway.token_secret).toBe('gateway-token');
    expect(gateway.mounts).toEqual({ data: '/data', secrets: '/run/secrets', config: '/etc/mvm-config', tmp: '/tmp/x' });
  });

  it('gives the service environment from the mount points only', () => {
    const env = openclawServiceEnv({ mounts, configFile: 'openclaw.json', path: '/opt/node24/bin:/usr/bin' });
    expect(env).toMatchObject({
      OPENCLAW_STATE_DIR: '/data/openclaw/state',
      OPENCLAW_CONFIG_PATH: '/etc/mvm-config/openclaw.json',
      OPENCLAW_CONFIG_READONLY: '1',
      OPENCLAW_HOME: '/data/openclaw',
      XDG_CACHE_HOME: '/data/openclaw/cache',
      NODE_COMPILE_CACHE: '/data/openclaw/cache/node-compile-cache',
      TMPDIR: '/tmp/mvm',
      OPENCLAW_DISABLE_BONJOUR: '1',
      OPENCLAW_NO_AUTO_UPDATE: '1',
      OPENCLAW_OFFLINE: '1',
      PATH: '/opt/node24/bin:/usr/bin',
    });
  });
});

describe('openclaw config validate (the real package) accepts the generated files', () => {
  const { mounts: _m, config_file: _f, ...input } = base;
  it('a gateway config with Telegram', async () => {
    const { result, rendered } = await validate(input, { 'gateway-token': 'tok', 'telegram-bot-token': '123:abc' });
    expect(rendered.connectors[0]).toEqual({ name: 'telegram', enabled: true, reason: null });
    expect(result.exitCode, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/Config valid/);
  });

  it('a gateway config without Telegram (secret absent)', async () => {
    const { result, rendered } = await validate({ ...input, secrets_present: ['gateway-token'] }, { 'gateway-token': 'tok' });
    expect((rendered.config as any).channels).toBeUndefined();
    expect(result.exitCode, result.stdout + result.stderr).toBe(0);
  });

  it('a node-host config', async () => {
    const { result } = await validate({ ...input, format: 'openclaw-node', listen: null, token_secret: null, connectors: [] }, {});
    expect(result.exitCode, result.stdout + result.stderr).toBe(0);
  });

  it('and the real validator does reject a config key OpenClaw does not know (so the checks above can fail)', async () => {
    const dirs = instanceDirs(harness.parent, 'invalid');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(dirs.mounts.config, 'openclaw.json'), JSON.stringify({ gateway: { mode: 'local' }, meta: { config_version: 3 } }));
    const result = await execa(harness.install.node, [harness.install.entry, 'config', 'validate'], { env: serviceEnv(harness.install, dirs), reject: false, extendEnv: false });
    expect(result.exitCode).not.toBe(0);
  });
});
