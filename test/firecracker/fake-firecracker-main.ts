import { parseArgs } from 'node:util';
import { FakeFirecracker } from './fake-firecracker.ts';
import { FirecrackerSpec } from './firecracker-spec.ts';

/**
 * The fake Firecracker as a process, started in place of the `firecracker` binary:
 *
 *   node --import tsx test/firecracker/fake-firecracker-main.ts --api-sock <path> [--call-log <file>] [--no-guest] [--chroot <dir>] [--run-as uid:gid]
 *
 * Takes `--api-sock` like Firecracker (and ignores `--id`, `--level`, `--log-path`, which the
 * driver may pass). `--chroot` is the fake jailer's: the paths the API is given resolve under it.
 * Exits 0 on SIGTERM or SIGINT, and 1 after a failed snapshot load, as
 * Firecracker does.
 */

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'api-sock': { type: 'string' },
      'call-log': { type: 'string' },
      'no-guest': { type: 'boolean' },
      chroot: { type: 'string' },
      id: { type: 'string' },
      level: { type: 'string' },
      'log-path': { type: 'string' },
      // The fake jailer's: drop to uid:gid once everything is loaded, before serving the API.
      'run-as': { type: 'string' },
    },
    strict: true,
  });
  const apiSock = values['api-sock'];
  if (!apiSock) {
    process.stderr.write('fake-firecracker: --api-sock <path> is required\n');
    process.exit(2);
  }
  let fake: FakeFirecracker | null = null;
  const exit = (code: number) => {
    void (fake?.close() ?? Promise.resolve()).finally(() => process.exit(code));
  };
  // Read as root: the jailed ids may not reach the repository the spec and this code live in.
  const spec = new FirecrackerSpec();
  if (values['run-as'] !== undefined) {
    const [uid, gid] = values['run-as'].split(':').map(Number);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) {
      process.stderr.write(`fake-firecracker: --run-as ${values['run-as']}: expected uid:gid\n`);
      process.exit(2);
    }
    process.setgroups!([]);
    process.setgid!(gid!);
    process.setuid!(uid!);
  }
  fake = await FakeFirecracker.start({
    apiSock,
    guest: values['no-guest'] !== true,
    ...(values.chroot ? { root: values.chroot } : {}),
    ...(values['call-log'] ? { callLog: values['call-log'] } : {}),
    onFatal: (reason) => {
      process.stderr.write(`fake-firecracker: snapshot load failed, exiting: ${reason}\n`);
      exit(1);
    },
  }, spec);
  process.stdout.write(`fake-firecracker listening on ${apiSock}\n`);
  process.once('SIGTERM', () => exit(0));
  process.once('SIGINT', () => exit(0));
}

main().catch((error: unknown) => {
  process.stderr.write(`fake-firecracker: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(1);
});
