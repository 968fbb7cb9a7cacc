import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';

/**
 * The secrets drive as the agent sees it: file name -> content. Values stay in this process; the
 * protocol only ever carries names. A missing directory is an empty drive (a role without secrets).
 */
export type SecretFiles = ReadonlyMap<string, Buffer>;

const SECRET_NAME = /^[a-z0-9][a-z0-9._-]*$/;
const MAX_SECRET_BYTES = 1024 * 1024;
const MAX_SECRETS = 256;

export async function readSecretsDir(dir: string | null): Promise<SecretFiles> {
  const secrets = new Map<string, Buffer>();
  if (dir === null) return secrets;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return secrets;
    throw new Error(`cannot read the secrets directory ${dir}: ${(error as Error).message}`, { cause: error });
  }
  const names = entries.filter((e) => e.isFile() && e.name.length <= 64 && SECRET_NAME.test(e.name)).map((e) => e.name).sort();
  if (names.length > MAX_SECRETS) throw new Error(`the secrets directory ${dir} holds more than ${MAX_SECRETS} files`);
  for (const name of names) {
    const content = await readFile(path.join(dir, name));
    if (content.length > MAX_SECRET_BYTES) throw new Error(`secret ${name} is larger than ${MAX_SECRET_BYTES} bytes`);
    secrets.set(name, content);
  }
  return secrets;
}

/** What changed between two readings, by name. */
export function diffSecrets(before: SecretFiles, after: SecretFiles): { added: string[]; changed: string[]; removed: string[] } {
  const added: string[] = [];
  const changed: string[] = [];
  const removed: string[] = [];
  for (const [name, value] of after) {
    const old = before.get(name);
    if (old === undefined) added.push(name);
    else if (!old.equals(value)) changed.push(name);
  }
  for (const name of before.keys()) if (!after.has(name)) removed.push(name);
  return { added: added.sort(), changed: changed.sort(), removed: removed.sort() };
}
