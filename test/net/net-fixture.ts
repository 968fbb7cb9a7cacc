/** A small fleet for the network tests: tenant net ids on both sides of 255, one ingress pool. */
export function pool(pool_id: string, role: 'gateway' | 'worker', running: number, ingress?: boolean) {
  return {
    pool_id,
    role,
    profile: role === 'gateway' ? 'openclaw-gateway' : 'openclaw-worker',
    revision: { artifacts: `${pool_id}-1`, config_version: 1, secrets_epoch: 0 },
    resources: { vcpus: 1, mem_mib: 2048, data_disk_mib: 1024 },
    desired_counts: { running, warm: 0, sleeping: 0 },
    ...(ingress === undefined ? {} : { ingress: { enabled: ingress } }),
  };
}

export function netDesiredState() {
  return {
    schema_version: 1 as const,
    node_id: 'net-test',
    generation: 3,
    tenants: [
      { tenant_id: 'acme', tenant_net_id: 7, ipv4_subnet: '10.81.0.0/24', pools: [pool('gw', 'gateway', 1, true), pool('wk', 'worker', 1)] },
      { tenant_id: 'bravo', tenant_net_id: 300, ipv4_subnet: '10.82.0.0/24', pools: [pool('gw', 'gateway', 1)] },
    ],
  };
}
