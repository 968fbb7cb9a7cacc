// Runs before `npm test`. The OpenClaw tests run the real `openclaw` package on Node 24 (it does
// not run on Node 20). It is not a dependency of mvm-actors (about 650 MB): it lives in a cache
// directory outside the project. Install it there when missing; it comes from the npm registry.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(import.meta.resolve('../../src/cli/bin.js'));
const status = spawnSync(process.execPath, [bin, 'openclaw', 'status', '--json'], { encoding: 'utf8' });
function isInstalled() {
  try {
    return status.status === 0 && JSON.parse(status.stdout).installed === true;
  } catch {
    return false;
  }
}
const installed = isInstalled();
if (!installed) {
  console.error('OpenClaw is not installed for the tests: running `npm run openclaw:install` (pinned openclaw and Node 24 from the npm registry, into a cache directory)...');
  const install = spawnSync(process.execPath, [bin, 'openclaw', 'install'], { stdio: 'inherit' });
  if (install.status !== 0) {
    console.error('Installing OpenClaw failed; see above. Retry with: npm run openclaw:install');
    process.exit(1);
  }
}
