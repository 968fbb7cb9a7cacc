import { describe, expect, it } from 'vitest';
import { fromZodError } from '../../src/common/issues.ts';
import { InstanceRecord } from '../../src/schemas/instance.ts';

function anInstance(): any {
  return {
    schema_version: 1,
    instance_id: 'acme-gateway-0',
    tenant_id: 'acme',
    pool_id: 'gateway',
    role: 'gateway',
    profile: 'openclaw-gateway',
    config_version: 3,
    secrets_epoch: 2,
    revision: { artifacts: 'gateway-2026.11.20', config_version: 3, secrets_epoch: 2 },
    network: { ipv4: '10.101.0.2', mac: '06:00:0a:65:00:02', tap: 'mvt101-0', vsock_cid: 3 },
    status: 'running',
    status_reason: null,
    timestamps: {
      created_at: '2026-11-25T10:00:00.000Z',
      updated_at: '2026-11-25T10:00:05.000Z',
      booted_at: '2026-11-25T10:00:02.000Z',
      status_since: '2026-11-25T10:00:05.000Z',
    },
    manifest_hash: `sha256:${'0'.repeat(64)}`,
  };
}

function pathsOf(value: unknown): string[] {
  const result = InstanceRecord.safeParse(value);
  return result.success ? [] : fromZodError(result.error).map((i) => i.path);
}

describe('instance record', () => {
  it('accepts a complete record', () => {
    expect(pathsOf(anInstance())).toEqual([]);
  });

  it.each<[string, (r: any) => void, string]>([
    ['an instance id with a slash', (r) => (r.instance_id = 'acme/gateway-0'), 'instance_id'],
    ['an instance id over 72 characters', (r) => (r.instance_id = 'i'.repeat(73)), 'instance_id'],
    ['a tap name over 15 characters', (r) => (r.network.tap = 'mvm-tap-acme-gateway'), 'network.tap'],
    ['an upper-case MAC', (r) => (r.network.mac = '06:00:0A:65:00:02'), 'network.mac'],
    ['a reserved vsock CID', (r) => (r.network.vsock_cid = 2), 'network.vsock_cid'],
    ['a malformed IP', (r) => (r.network.ipv4 = '10.101.0.256'), 'network.ipv4'],
    ['an unknown status', (r) => (r.status = 'paused'), 'status'],
    ['a timestamp without a zone', (r) => (r.timestamps.created_at = '2026-11-25 10:00'), 'timestamps.created_at'],
    ['a malformed manifest hash', (r) => (r.manifest_hash = 'md5:abc'), 'manifest_hash'],
  ])('rejects %s', (_what, edit, path) => {
    const record = anInstance();
    edit(record);
    expect(pathsOf(record)).toEqual([path]);
  });

  it('allows a record that has not booted yet', () => {
    const record = anInstance();
    record.status = 'pending';
    record.manifest_hash = null;
    record.timestamps.booted_at = null;
    expect(pathsOf(record)).toEqual([]);
  });
});
