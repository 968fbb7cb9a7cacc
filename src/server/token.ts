import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The API token: generated on first start into the data directory (mode 0600), or read from a
 * file the operator chose. The CLI and the visualizer find it the same way.
 */
export function tokenFileFor(dataDir: string): string {
  return path.join(dataDir, 'api-token');
}

export function loadOrCreateToken(file: string): string {
  if (existsSync(file)) return readToken(file);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('base64url');
  writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  return token;
}

export function readToken(file: string): string {
  const mode = statSync(file).mode & 0o077;
  if (mode !== 0) throw new Error(`token file ${file} is readable by others (mode ${(statSync(file).mode & 0o777).toString(8)}); run: chmod 600 ${file}`);
  const token = readFileSync(file, 'utf8').trim();
  if (token.length < 16) throw new Error(`token file ${file} holds no usable token (at least 16 characters)`);
  return token;
}

/** Constant-time comparison, so a wrong token's timing says nothing about the right one. */
export function tokenMatches(expected: string, given: string | undefined): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}
