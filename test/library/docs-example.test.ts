import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/fixtures.ts';

const EXAMPLE = path.join(REPO_ROOT, 'docs/examples/validate-desired-state.ts');

describe('the library example in docs/examples', () => {
  it('runs and prints each applicable pool', async () => {
    const { stdout, exitCode } = await execa('npx', ['tsx', EXAMPLE], { cwd: REPO_ROOT, reject: false });
    expect(exitCode).toBe(0);
    expect(stdout.split('\n')).toEqual([
      expect.stringMatching(/^acme\/gateway: role gateway \(sha256:[0-9a-f]{12}\), 1 running$/),
      expect.stringMatching(/^acme\/workers: role worker /),
      expect.stringMatching(/^acme\/builds: role builder /),
      expect.stringMatching(/^globex\/gateway: role gateway /),
      expect.stringMatching(/^globex\/imessage: role capability-imessage .*, 0 running$/),
    ]);
  });

  it('reports problems and still lists what would apply', async () => {
    const { stdout, stderr, exitCode } = await execa('npx', ['tsx', EXAMPLE, path.join(REPO_ROOT, 'docs/examples/desired-state-invalid.json')], {
      cwd: REPO_ROOT,
      reject: false,
    });
    expect(exitCode).toBe(1);
    expect(stderr).toContain('tenants[0].pools[1].role: unknown role "gatway"');
    expect(stdout).toMatch(/^acme\/gateway: role gateway/);
  });
});

describe('the host embedding example in docs/examples', () => {
  it('applies the example desired state, lists the instances and shows the floor refusal', async () => {
    const { stdout, exitCode } = await execa('npx', ['tsx', path.join(REPO_ROOT, 'docs/examples/embed-host.ts')], { cwd: REPO_ROOT, reject: false });
    expect(exitCode).toBe(0);
    expect(stdout).toContain('applied generation 7: 9 steps');
    expect(stdout).toMatch(/^acme-gateway-0 +running$/m);
    expect(stdout).toMatch(/^globex-imessage-0 +refused \(missing-drive:secrets:missing-secret:imessage-credentials\)$/m);
    expect(stdout).toContain('sleep acme-gateway-0: {"accepted":false,"reason":"sleep-floor:gateway:1"}');
  });
});
