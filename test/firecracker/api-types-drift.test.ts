import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { generateFirecrackerTypes, SPEC_PATH, TYPES_PATH } from '../tools/generate-firecracker-types.ts';

/** src/firecracker/api-types.ts is generated from the spec: regenerating must give the committed file, byte for byte. */
describe('the generated Firecracker API types', () => {
  it('match a fresh generation from src/firecracker/firecracker-api.yaml (run npx tsx test/tools/generate-firecracker-types.ts to update)', async () => {
    expect(await generateFirecrackerTypes()).toBe(await readFile(TYPES_PATH, 'utf8'));
  });

  it('come from Firecracker v1.16.1 (the spec copied into the repository)', async () => {
    const spec = await readFile(SPEC_PATH, 'utf8');
    expect(spec).toMatch(/^ {2}version: 1\.16\.1$/m);
    const types = await readFile(TYPES_PATH, 'utf8');
    for (const name of ['MachineConfiguration', 'BootSource', 'Drive', 'NetworkInterface', 'Vsock', 'SnapshotCreateParams', 'SnapshotLoadParams', 'VsockOverride', 'NetworkOverride']) {
      expect(types).toContain(`${name}: {`);
    }
  });
});
