import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { generateRuleset, RulesetError, type NetInstance } from '../../src/net/nft-ruleset.ts';
import { DesiredState } from '../../src/schemas/desired-state.ts';
import { builtinCatalog } from '../helpers/fixtures.ts';
import { netDesiredState, pool } from './net-fixture.ts';
import { requireRootAndTools } from './netns.ts';

const instances: NetInstance[] = [
  { instance_id: 'bravo-gw-0', tenant_id: 'bravo', pool_id: 'gw', ipv4: '10.82.0.2' },
  { instance_id: 'acme-wk-0', tenant_id: 'acme', pool_id: 'wk', ipv4: '10.81.0.3' },
  { instance_id: 'acme-gw-1', tenant_id: 'acme', pool_id: 'gw', ipv4: '10.81.0.10' },
  { instance_id: 'acme-gw-0', tenant_id: 'acme', pool_id: 'gw', ipv4: '10.81.0.2' },
];

async function generate(doc = netDesiredState(), list = instances, options = { controlPorts: [7070, 7071] }) {
  const catalog = await builtinCatalog();
  return generateRuleset({ desired: DesiredState.parse(doc), roleOf: (n) => catalog.roles.get(n)?.manifest, instances: list, options });
}

describe('nftables ruleset generation', () => {
  it('is deterministic: input order does not change a byte', async () => {
    const doc = netDesiredState();
    const reversed = { ...doc, tenants: [...doc.tenants].reverse() };
    expect((await generate(reversed, [...instances].reverse())).text).toBe((await generate()).text);
  });

  it('replaces one inet table atomically and names tenants and pools in comments', async () => {
    const { text } = await generate();
    expect(text.split('\n').slice(2, 5)).toEqual(['table inet mvm', 'delete table inet mvm', 'table inet mvm {']);
    expect(text).toContain('comment "tenant acme (net 7, 10.81.0.0/24): what its guests send"');
    expect(text).toContain('comment "tenant bravo (net 300, 10.82.0.0/24): new connections from outside"');
    expect(text).toContain('elements = { "mvbr7", "mvbr300" }');
  });

  it('ingress: only the pool whose role allows it and which enables it, to the role target port, spread over its instances', async () => {
    const { text, tenants } = await generate();
    expect(tenants.map((t) => t.ingress)).toEqual([
      { tenant_id: 'acme', pool_id: 'gw', protocol: 'tcp', host_port: 20007, target_port: 18789, targets: ['10.81.0.2', '10.81.0.10'] },
      null,
    ]);
    expect(text).toContain('tcp dport 20007 dnat ip to jhash ip saddr mod 2 map { 0 : 10.81.0.2, 1 : 10.81.0.10 }:18789 comment "ingress: tenant acme, pool gw"');
    expect(text).toContain('elements = { 10.81.0.2 . tcp . 18789, 10.81.0.10 . tcp . 18789 }');
    expect(text).not.toContain('10.82.0.2 . tcp');
    // The worker role does not allow ingress, so asking for it changes nothing here (validation refuses it).
    const one = await generate(netDesiredState(), instances.filter((i) => i.instance_id !== 'acme-gw-1'));
    expect(one.text).toContain('tcp dport 20007 dnat ip to 10.81.0.2:18789');
  });

  it('drops between tenants, guards spoofed sources, and keeps guests off every control port', async () => {
    const { text } = await generate();
    expect(text).toContain('iifname @tenant_bridges tcp dport { 7070, 7071 } drop');
    expect(text).toContain('ip saddr != 10.82.0.0/24 drop');
    expect(text).toMatch(/chain from_t7 \{[^}]*oifname "mvbr7" accept[^}]*oifname @tenant_bridges drop/);
  });

  it('refuses what it cannot express, naming tenant and field', async () => {
    const two = netDesiredState();
    two.tenants[0]!.pools.push(pool('gw2', 'gateway', 1, true));
    await expect(generate(two)).rejects.toThrow(RulesetError);
    await expect(generate(two)).rejects.toThrow(/tenant "acme": pools "gw", "gw2" all enable ingress/);
    await expect(generate(netDesiredState(), instances, { controlPorts: [] })).rejects.toThrow(/controlPorts must name at least the serve API port/);
    await expect(generate(netDesiredState(), instances, { controlPorts: [20007] })).rejects.toThrow(/ingress port 20007 .* is a control port/);
  });

  it('is accepted by nft (checked in a throwaway network namespace)', async () => {
    requireRootAndTools();
    const { text } = await generate();
    const check = await execa('unshare', ['-n', '--', 'nft', '-c', '-f', '-'], { input: text, reject: false });
    expect(check.stderr).toBe('');
    expect(check.exitCode).toBe(0);
  });
});
