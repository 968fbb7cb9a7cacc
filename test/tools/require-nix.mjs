// Runs before `npm test`. The Nix tests evaluate nix/ with `nix-instantiate` (no daemon, no
// network, no nixpkgs). On a fresh Debian machine as root, install Debian's nix-bin; elsewhere,
// say exactly what is missing and how to get it, instead of letting tests fail obscurely.
import { spawnSync } from 'node:child_process';

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

if (!has('nix-instantiate')) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (isRoot && has('apt-get')) {
    console.error('nix-instantiate not found: installing Debian package nix-bin (the Nix tests need it)...');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    const install = update.status === 0 && spawnSync('apt-get', ['install', '-y', '-qq', 'nix-bin'], { stdio: 'inherit', env });
    if (!install || install.status !== 0 || !has('nix-instantiate')) {
      console.error('Installing nix-bin failed. Install it yourself: apt-get install -y nix-bin');
      process.exit(1);
    }
  } else {
    console.error(
      'nix-instantiate not found. The tests evaluate the Nix role files, so they need Nix:\n' +
        '  Debian/Ubuntu: sudo apt-get install -y nix-bin\n' +
        '  elsewhere:     install Nix (any 2.x), then re-run npm test',
    );
    process.exit(1);
  }
}
