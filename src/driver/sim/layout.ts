import path from 'node:path';

/** Where the simulation driver keeps one VM's files, under `<stateDir>/vms/<instance>/`. */
export interface VmLayout {
  dir: string;
  drives: string;
  drive(name: string): string;
  /** The runner's start record: pid and /proc start time. */
  pidFile: string;
  /** What the runner needs to know (written at boot and restore). */
  runnerFile: string;
  /** Runtime files of the running VM: the agent's socket, pid files, the ready marker. */
  runDir: string;
  agentSocket: string;
  pidDir: string;
  readyFile: string;
  /** The simulated services and where they listen. */
  servicesFile: string;
  /** Firecracker's vsock `uds_path`. */
  vsockSocket: string;
  snapshotFile: string;
  /** The VM's /tmp (bind-mounted there for a VM that runs real OpenClaw). */
  tmpDir: string;
  stdoutLog: string;
  stderrLog: string;
}

export function vmLayout(vmDir: string): VmLayout {
  const runDir = path.join(vmDir, 'run');
  return {
    dir: vmDir,
    drives: path.join(vmDir, 'drives'),
    drive: (name) => path.join(vmDir, 'drives', name),
    pidFile: path.join(vmDir, 'runner.pid'),
    runnerFile: path.join(vmDir, 'runner.json'),
    runDir,
    agentSocket: path.join(runDir, 'agent.sock'),
    pidDir: path.join(runDir, 'pids'),
    readyFile: path.join(runDir, 'ready'),
    servicesFile: path.join(runDir, 'services.json'),
    vsockSocket: path.join(vmDir, 'vsock.sock'),
    snapshotFile: path.join(vmDir, 'snapshot.json'),
    tmpDir: path.join(vmDir, 'tmp'),
    stdoutLog: path.join(vmDir, 'vm.out.log'),
    stderrLog: path.join(vmDir, 'vm.err.log'),
  };
}

/** What boot hands the VM runner. */
export interface RunnerConfig {
  instance_id: string;
  tenant_id: string;
  /** The guest agent's vsock port. */
  agent_port: number;
  /** This VM's own loopback address: its simulated services listen there. */
  loopback: string;
  /** Drive mount points as the guest sees them, mapped to host directories. */
  config_dir: string;
  secrets_dir: string;
  secrets_epoch: number;
  /**
   * The tenant's uid and gid (src/driver/sim/tenant-identity.ts): the runner sets up its sockets
   * as root, then drops to them before it reads a drive or starts a service. null: it keeps the
   * driver's user (no root, or isolation off).
   */
  identity: { uid: number; gid: number } | null;
  /**
   * Real OpenClaw services (openclaw-launcher.ts), or null: every service is a simulated stand-in.
   * With it the runner starts inside the VM's own network namespace (vm-netns.ts, entered by `ip
   * netns exec`, which also gives it a private mount namespace) and, still as root, bind-mounts
   * each drive at its guest mount point, the VM's tmp at /tmp and the OpenClaw install at its
   * image path, so everything runs with a real guest's paths and writes nothing elsewhere.
   */
  openclaw?: {
    /** Host directory -> guest path (`read_only` remounts it read-only). */
    mounts: { host: string; guest: string; read_only: boolean }[];
    node: string;
    entry: string;
    data: string;
    secrets: string;
    config: string;
  } | null;
  /** How long the VM may take to stop (its services' stop_timeout_s) before SIGKILL. */
  stop_grace_ms?: number;
}

/** 10.200.0.2 -> 127.200.0.2: one loopback address per VM, so tenants' services may share a port. */
export function loopbackFor(ipv4: string): string {
  const octets = ipv4.split('.');
  if (octets.length !== 4 || octets.some((o) => !/^[0-9]{1,3}$/.test(o) || Number(o) > 255)) throw new Error(`not an IPv4 address: ${ipv4}`);
  return `127.${octets[1]}.${octets[2]}.${octets[3]}`;
}
