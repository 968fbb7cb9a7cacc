// Runs before `npm test`. The visualizer test (test/server/visualizer.test.ts) drives Debian's
// headless Chromium at /usr/bin/chromium with playwright-core (which downloads no browser). On a
// fresh Debian machine as root, install Debian's chromium; elsewhere, say exactly what is missing
// and how to get it, instead of letting the test fail later.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

const CHROMIUM = '/usr/bin/chromium';

const present = () => {
  try {
    accessSync(CHROMIUM, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

if (!present()) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (isRoot && has('apt-get')) {
    console.error(`${CHROMIUM} not found: installing Debian package chromium (the visualizer's browser test needs it)...`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    const install = update.status === 0 && spawnSync('apt-get', ['install', '-y', '-qq', 'chromium'], { stdio: 'inherit', env });
    if (!install || install.status !== 0 || !present()) {
      console.error('Installing chromium failed. Install it yourself: apt-get install -y chromium');
      process.exit(1);
    }
  } else {
    console.error(
      `${CHROMIUM} not found. The visualizer test runs the page in Debian's headless Chromium:\n` +
        '  Debian/Ubuntu: sudo apt-get install -y chromium\n' +
        `  elsewhere:     install Chromium so that ${CHROMIUM} runs it (e.g. a symlink), then re-run npm test`,
    );
    process.exit(1);
  }
}
