import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { systemClock } from '../common/clock.ts';
import { GuestAgent } from './guest-agent.ts';
import { OpenClawGuest } from './openclaw-guest.ts';
import { defaultServiceProbe } from './service-probe.ts';
import { parseListenTarget, transportFor } from './transport.ts';
import { fileJobStatus, noWork, simulatedWork } from './work.ts';

/**
 * mvm-guest-agent: node --import tsx src/guest/main.ts --config /etc/mvm-config/mvm.json --listen <path>
 *
 * In a real guest, nix/modules/guest.nix starts it as the mvm-guest-agent unit with `--listen
 * /run/mvm/agent.sock --config-dir <config drive> --secrets-dir <secrets drive> --pid-dir
 * /run/mvm/pids`, and the mvm-vsock-bridge unit (socat) carries the role's vsock port to that
 * socket (test/driver/sim-guest-module.test.ts checks that the two agree).
 *
 * Exits 2 on bad usage, 1 when it cannot listen, 0 on SIGTERM or SIGINT. Prints one line,
 * `mvm-guest-agent listening on <address>`, on stdout once it accepts connections; logs go to stderr.
 */

const USAGE = `usage: mvm-guest-agent --listen <unix-socket-path | vsock-port> [options]
  --config FILE              the config drive's mvm.json (default /etc/mvm-config/mvm.json)
  --config-dir DIR           same as --config DIR/mvm.json
  --secrets-dir DIR          the secrets drive (default /run/secrets)
  --secrets-epoch N          secrets epoch to report until the host names one
  --pid-dir DIR              <service>.pid files, for services without a TCP port
  --job-status-file FILE     JSON job status kept by the job runner
  --simulate-in-flight-ms N  (tests, simulator) each drain finds work that takes N ms`;

function usage(message: string): never {
  process.stderr.write(`mvm-guest-agent: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function nonNegativeInt(name: string, value: string | undefined): number | null {
  if (value === undefined) return null;
  if (!/^[0-9]+$/.test(value)) usage(`${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  return Number(value);
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        config: { type: 'string' },
        'config-dir': { type: 'string' },
        listen: { type: 'string' },
        'secrets-dir': { type: 'string' },
        'secrets-epoch': { type: 'string' },
        'pid-dir': { type: 'string' },
        'job-status-file': { type: 'string' },
        'simulate-in-flight-ms': { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    usage((error as Error).message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (values.config !== undefined && values['config-dir'] !== undefined) usage('give --config or --config-dir, not both');
  if (values.listen === undefined) usage('--listen is required');
  const configPath = values.config ?? path.join(values['config-dir'] ?? '/etc/mvm-config', 'mvm.json');
  let transport;
  try {
    transport = transportFor(parseListenTarget(values.listen));
  } catch (error) {
    usage((error as Error).message);
  }
  const secretsEpoch = nonNegativeInt('--secrets-epoch', values['secrets-epoch']);
  const inFlightMs = nonNegativeInt('--simulate-in-flight-ms', values['simulate-in-flight-ms']);

  const clock = systemClock;
  const log = pino({ name: 'mvm-guest-agent', base: { pid: process.pid } }, pino.destination(2));
  const secretsDir = values['secrets-dir'] ?? '/run/secrets';
  const pidDir = values['pid-dir'] ?? null;
  // OpenClaw's readiness kinds (gateway handshake, node host connected); other services fall through to the default probe.
  const openclaw = new OpenClawGuest({ clock, secretsDir, dataDir: null, pidDir });
  const agent = await GuestAgent.start({
    configPath,
    secretsDir,
    secretsEpoch,
    clock,
    log,
    probe: defaultServiceProbe({ clock, pidDir }),
    openclaw: () => openclaw,
    jobs: fileJobStatus(values['job-status-file'] ?? null),
    work: inFlightMs === null ? noWork : simulatedWork(inFlightMs, clock),
  });

  let listener;
  try {
    listener = await transport.listen((stream) => agent.handleConnection(stream));
  } catch (error) {
    process.stderr.write(`mvm-guest-agent: cannot listen: ${(error as Error).message}\n`);
    process.exit(1);
  }
  const hello = agent.hello();
  log.info({ address: listener.address, instance_id: hello.instance_id, role: hello.role, handlers: hello.handlers, config_error: hello.config_error }, 'listening');
  process.stdout.write(`mvm-guest-agent listening on ${listener.address}\n`);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    agent.closeConnections();
    void listener.close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`mvm-guest-agent: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(1);
});
