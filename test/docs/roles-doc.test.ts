import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { RoleManifest } from '../../src/schemas/role-manifest.ts';
import { FIELD_REFERENCE, ROLES_DOC, renderRolesDoc } from '../tools/render-roles-doc.ts';
import { builtinCatalog } from '../helpers/fixtures.ts';

describe('docs/roles.md', () => {
  it('is current with the manifests (run `npm run docs:roles` after `npm run manifests`)', async () => {
    expect(await readFile(ROLES_DOC, 'utf8')).toBe(renderRolesDoc(await builtinCatalog()));
  });

  it('documents every manifest field and no field that does not exist', () => {
    expect(FIELD_REFERENCE.map(([field]) => field).sort()).toEqual(Object.keys(RoleManifest.shape).sort());
  });
});
