import { spawn } from 'node:child_process';
import { existsSync, openSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

/**
 * A stand-in for Firecracker's `jailer`, started by the driver in its place:
 *
 *   node --import tsx test/firecracker/fake-jailer-main.ts [--jail-log FILE] --id ID --exec-file FC
 *     --uid N --gid N --chroot-base-dir DIR --cgroup-version 2 [--cgroup file=value ...] -- FC-ARGS
 *
 * It parses the jailer's command line as the real one does (docs/jailer.md, v1.16) and refuses
 * what the real one refuses (a bad id, an exec file whose name lacks "firecracker", a missing
 * uid/gid, cgroup v1), checks the chroot the driver prepared, drops to the uid/gid for real
 * (setgroups, setgid, setuid: it must run as root) and runs the exec file with its API socket
 * inside the chroot and `--chroot` so the fake Firecracker resolves every API path under it, as a
 * chrooted process would. Node cannot exec(2) in place, so it stays as the parent, forwards
 * SIGTERM/SIGINT and exits with the child's status. `--jail-log` (the fake's own option) appends
 * one JSON line per start: what it parsed and the ids it runs as.
 */

function fail(message: string): never {
  process.stderr.write(`fake-jailer: ${message}\n`);
  process.exit(2);
}

const dashDash = process.argv.indexOf('--', 2);
const own = dashDash === -1 ? process.argv.slice(2) : process.argv.slice(2, dashDash);
const vmmArgs = dashDash === -1 ? [] : process.argv.slice(dashDash + 1);

const { values } = parseArgs({
  args: own,
  options: {
    'jail-log': { type: 'string' },
    id: { type: 'string' },
    'exec-file': { type: 'string' },
    uid: { type: 'string' },
    gid: { type: 'string' },
    'chroot-base-dir': { type: 'string' },
    'cgroup-version': { type: 'string' },
    cgroup: { type: 'string', multiple: true },
    'parent-cgroup': { type: 'string' },
    netns: { type: 'string' },
    daemonize: { type: 'boolean' },
  },
  strict: true,
});

const id = values.id ?? fail('--id is required');
if (!/^[A-Za-z0-9-]{1,64}$/.test(id)) fail(`invalid --id ${JSON.stringify(id)}: 1 to 64 alphanumerics and "-"`);
const execFile = values['exec-file'] ?? fail('--exec-file is required');
if (!path.isAbsolute(execFile) || !existsSync(execFile)) fail(`--exec-file ${execFile}: no such file`);
if (!path.basename(execFile).includes('firecracker')) fail(`--exec-file ${execFile}: the file name must contain "firecracker"`);
const uid = Number(values.uid ?? fail('--uid is required'));
const gid = Number(values.gid ?? fail('--gid is required'));
if (!Number.isInteger(uid) || uid < 0 || !Number.isInteger(gid) || gid < 0) fail(`--uid ${values.uid} --gid ${values.gid}: whole numbers required`);
const base = values['chroot-base-dir'] ?? '/srv/jailer';
if (values['cgroup-version'] !== '2') fail(`--cgroup-version ${values['cgroup-version'] ?? '(default 1)'}: this fake only implements cgroup v2`);
const cgroups: Record<string, string> = {};
for (const entry of values.cgroup ?? []) {
  const match = /^([a-z]+\.[a-z_.]+)=(.+)$/.exec(entry);
  if (!match) fail(`--cgroup ${entry}: expected <file>=<value>, e.g. memory.max=1073741824`);
  cgroups[match[1]!] = match[2]!;
}

const chroot = path.join(base, path.basename(execFile), id, 'root');
if (!statSync(chroot, { throwIfNoEntry: false })?.isDirectory()) fail(`${chroot} does not exist: the chroot must be prepared before the jailer runs`);
const apiIndex = vmmArgs.indexOf('--api-sock');
const apiInside = apiIndex === -1 ? '/run/firecracker.socket' : vmmArgs[apiIndex + 1];
if (!apiInside?.startsWith('/')) fail(`--api-sock ${apiInside}: must be an absolute path inside the chroot`);
const rest = apiIndex === -1 ? vmmArgs : [...vmmArgs.slice(0, apiIndex), ...vmmArgs.slice(apiIndex + 2)];
const apiSock = path.join(chroot, apiInside);
if (!existsSync(path.dirname(apiSock))) fail(`${path.dirname(apiInside)} does not exist in the chroot ${chroot}`);

if (process.getuid?.() !== 0) fail('must run as root to drop to the jail uid/gid');
// Opened as root: the jailed ids may not write next to the test's files.
const jailLog = values['jail-log'] ? openSync(values['jail-log'], 'a') : null;
// The real jailer drops privileges and then execs Firecracker, whose binary it has linked into
// the chroot. The fake Firecracker is Node plus this repository, which the jailed ids may not be
// able to read (a clone under a 0700 directory such as /root or mktemp -d): so it starts as root,
// loads everything it needs, and drops to the jail's ids itself (--run-as) before it serves the
// API. This process drops too, so both run as the instance's uid/gid.
const child = spawn(execFile, ['--api-sock', apiSock, '--chroot', chroot, '--run-as', `${uid}:${gid}`, ...rest], { stdio: 'inherit' });
// In the order that works: groups, gid, then uid.
process.setgroups!([]);
process.setgid!(gid);
process.setuid!(uid);
if (jailLog !== null) {
  writeSync(jailLog, `${JSON.stringify({ id, exec_file: execFile, chroot, uid: process.getuid!(), gid: process.getgid!(), cgroups, api_sock: apiSock, vmm_pid: child.pid, argv: process.argv.slice(2) })}\n`);
}
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 + 15 : 1)));
