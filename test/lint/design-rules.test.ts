import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/fixtures.ts';

/** The lint rules carry design constraints; these tests prove each one fires, and only where it should. */
const eslint = new ESLint({ cwd: REPO_ROOT });

async function ruleMessages(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return result!.messages.map((m) => `${m.ruleId}: ${m.message}`);
}

describe('machines/ is the pure statechart layer', () => {
  it.each([
    "import { readFile } from 'node:fs/promises';",
    "import path from 'path';",
    "import { open } from 'lmdb';",
    "import Fastify from 'fastify';",
    "import { execa } from 'execa';",
    "import { FakeDriver } from '../src/driver/fake-driver.ts';",
    "import { openStore } from '../src/store/lmdb-store.ts';",
    "import { buildApp } from '../src/server/app.ts';",
  ])('rejects %s', async (line) => {
    const messages = await ruleMessages(`${line}\nexport {};\n`, 'machines/compose.ts');
    const restricted = messages.filter((m) => m.startsWith('no-restricted-imports: '));
    expect(restricted).toHaveLength(1);
    expect(restricted[0]).toMatch(/machines\/ (is the pure statechart layer|may not import)/);
  });

  it('allows xstate and zod', async () => {
    expect(await ruleMessages("import { setup } from 'xstate';\nimport { z } from 'zod';\nexport { setup, z };\n", 'machines/compose.ts')).toEqual([]);
  });

  it('does not restrict src/', async () => {
    expect(await ruleMessages("import { readFile } from 'node:fs/promises';\nexport { readFile };\n", 'src/catalog/x.ts')).toEqual([]);
  });
});

describe('roles are data, not branches', () => {
  it.each([
    "export const f = (role: string) => role === 'gateway';",
    "export const f = (m: { name: string }) => m.name !== 'worker';",
    "export function f(r: string) { switch (r) { case 'builder': return 1; default: return 0; } }",
  ])('rejects %s', async (code) => {
    const messages = await ruleMessages(code, 'src/actors/x.ts');
    expect(messages).toEqual([expect.stringMatching(/^no-restricted-syntax: Do not (branch|switch) on a role name/)]);
  });
});

describe('time is injected', () => {
  it.each(['export const t = Date.now();', 'export const d = new Date();', 'setTimeout(() => {}, 10);', 'setInterval(() => {}, 10);'])(
    'rejects %s in src/ and machines/',
    async (code) => {
      expect(await ruleMessages(code, 'src/actors/x.ts')).toEqual([expect.stringMatching(/injected clock/)]);
      expect(await ruleMessages(code, 'machines/x.ts')).toEqual([expect.stringMatching(/injected clock/)]);
    },
  );

  it('allows it in the clock module and allows formatting a given time', async () => {
    expect(await ruleMessages('export const now = () => Date.now();', 'src/common/clock.ts')).toEqual([]);
    expect(await ruleMessages('export const iso = (ms: number) => new Date(ms).toISOString();', 'src/actors/x.ts')).toEqual([]);
  });
});
