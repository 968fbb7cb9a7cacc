// Runs before `npm test`. The networking tests apply real nftables rulesets inside network
// namespaces (as root) and the Firecracker tests build ext4 images with `mkfs.ext4 -d` and read
// them back with `debugfs`. On a fresh Debian machine as root, install what is missing; elsewhere,
// say exactly what is missing and how to get it.
import { spawnSync } from 'node:child_process';

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const needed = [
  { cmd: 'nft', pkg: 'nftables', why: 'the tenant isolation tests apply the generated ruleset' },
  { cmd: 'ip', pkg: 'iproute2', why: 'the isolation tests build network namespaces, bridges and veth pairs' },
  { cmd: 'ping', pkg: 'iputils-ping', why: 'the isolation tests ping within and across tenants' },
  { cmd: 'mkfs.ext4', pkg: 'e2fsprogs', why: 'drive images are built with mkfs.ext4 -d' },
  { cmd: 'debugfs', pkg: 'e2fsprogs', why: 'the drive image tests read images back without mounting' },
];
const missing = needed.filter((n) => !has(n.cmd));
if (missing.length > 0) {
  const pkgs = [...new Set(missing.map((m) => m.pkg))];
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (isRoot && has('apt-get')) {
    console.error(`installing Debian packages ${pkgs.join(' ')} (${missing.map((m) => `${m.cmd}: ${m.why}`).join('; ')})...`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    const install = update.status === 0 && spawnSync('apt-get', ['install', '-y', '-qq', ...pkgs], { stdio: 'inherit', env });
    if (!install || install.status !== 0 || missing.some((m) => !has(m.cmd))) {
      console.error(`Installing ${pkgs.join(' ')} failed. Install them yourself: apt-get install -y ${pkgs.join(' ')}`);
      process.exit(1);
    }
  } else {
    console.error(
      `Missing ${missing.map((m) => m.cmd).join(', ')}:\n` +
        missing.map((m) => `  ${m.cmd} (${m.pkg}): ${m.why}`).join('\n') +
        `\n  Debian/Ubuntu: sudo apt-get install -y ${pkgs.join(' ')}`,
    );
    process.exit(1);
  }
}
