import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { NIX_STORE } from '../catalog/nix-store-guard.ts';

/**
 * Checks a bundle's base Firecracker config (the `firecracker --config-file` document) against
 * the official API spec this project pins (src/firecracker/firecracker-api.yaml, v1.16.1), and
 * against what a bundle must be: host paths relative to the bundle, none under /nix/store.
 */

export interface ConfigProblem {
  /** Where in firecracker-config.json, e.g. `drives[1].cache_type`; empty for the document. */
  field: string;
  message: string;
}

const SPEC_FILE = new URL('../firecracker/firecracker-api.yaml', import.meta.url);

/** `/drives/1/cache_type` -> `drives[1].cache_type` */
function fieldOf(pointer: string, child?: string): string {
  const segments = pointer.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (child !== undefined) segments.push(child);
  let out = '';
  for (const s of segments) out += /^\d+$/.test(s) ? `[${s}]` : out === '' ? s : `.${s}`;
  return out;
}

/**
 * Every object schema in the spec that lists its properties is closed (additionalProperties:
 * false): Firecracker's config structs refuse unknown fields, and a misspelt field in a bundle
 * must fail at import, not at the first boot.
 */
function closeObjects(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closeObjects);
  if (schema === null || typeof schema !== 'object') return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) out[key] = key === 'properties' ? Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, closeObjects(v)])) : closeObjects(value);
  if ('properties' in out && !('additionalProperties' in out)) out.additionalProperties = false;
  return out;
}

/** Firecracker reads `null` as an absent optional field (serde Option); JSON Schema does not, so nulls go before validation. */
export function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null).map(([k, v]) => [k, withoutNulls(v)]));
}

let validator: Promise<ValidateFunction> | undefined;

/** Compiled once per process; ajv and yaml are loaded only when a bundle is imported. */
function specValidator(): Promise<ValidateFunction> {
  validator ??= (async () => {
    const [{ Ajv }, { parse }] = await Promise.all([import('ajv'), import('yaml')]);
    const spec = parse(await readFile(SPEC_FILE, 'utf8')) as { definitions: Record<string, unknown> };
    // The spec's only `format`s are int32/int64 (widths JSON cannot express) and one regex
    // misplaced in `format`; none is a JSON Schema format, so formats are not validated.
    const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false, logger: false });
    ajv.addSchema({ $id: 'firecracker', definitions: closeObjects(spec.definitions) });
    const validate = ajv.getSchema('firecracker#/definitions/FullVmConfiguration');
    if (!validate) throw new Error(`${SPEC_FILE.pathname} has no FullVmConfiguration definition`);
    return validate;
  })();
  return validator;
}

function describe(error: ErrorObject): ConfigProblem {
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'required':
      return { field: fieldOf(error.instancePath, String(params.missingProperty)), message: 'is required by the Firecracker API spec' };
    case 'additionalProperties':
      return {
        field: fieldOf(error.instancePath, String(params.additionalProperty)),
        message: 'is not a field Firecracker knows (it refuses unknown fields); check the spelling against src/firecracker/firecracker-api.yaml',
      };
    case 'enum':
      return { field: fieldOf(error.instancePath), message: `must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}` };
    default:
      return { field: fieldOf(error.instancePath), message: error.message ?? error.keyword };
  }
}

/** Problems the Firecracker API spec finds in a `--config-file` document (nulls read as absent). */
export async function specProblems(config: unknown): Promise<ConfigProblem[]> {
  const validate = await specValidator();
  if (validate(withoutNulls(config))) return [];
  const seen = new Set<string>();
  return (validate.errors ?? []).map(describe).filter((p) => {
    const key = `${p.field}\0${p.message}`;
    return seen.has(key) ? false : (seen.add(key), true);
  });
}

/**
 * Every string in the config that mentions /nix/store, with its field. `boot-source.boot_args`
 * is the guest's kernel command line: its `init=/nix/store/...` is a path inside the guest's own
 * root image, not on the host, so it is the one field allowed to name the guest's store.
 */
export function nixStoreReferences(config: unknown): ConfigProblem[] {
  const found: ConfigProblem[] = [];
  const walk = (value: unknown, pointer: string) => {
    if (typeof value === 'string') {
      if (value.includes(NIX_STORE) && pointer !== '/boot-source/boot_args') {
        found.push({ field: fieldOf(pointer), message: `names ${value}, inside /nix/store; the runtime never reads the Nix store. Make the path relative to the bundle (copy the file into it)` });
      }
    } else if (Array.isArray(value)) value.forEach((v, i) => walk(v, `${pointer}/${i}`));
    else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) walk(v, `${pointer}/${k}`);
  };
  walk(config, '');
  return found;
}

/** The files a bundle boots from, relative to the bundle directory. */
export interface BundlePaths {
  kernel: string;
  initrd: string | null;
  rootfs: string;
}

interface DriveLike {
  drive_id?: unknown;
  is_root_device?: unknown;
  path_on_host?: unknown;
}

/**
 * The kernel, initrd and root image the config names: each a relative path to a file in the
 * bundle. Per-instance drive slots carry `path_on_host: null` (the runtime fills them); any
 * other drive path must be a bundle file too. Every drive the role manifest declares needs a slot.
 * Call after `specProblems` found none.
 */
export function bundlePaths(config: Record<string, unknown>, bundleFiles: ReadonlySet<string>, manifestDrives: readonly string[]): { paths?: BundlePaths; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const inBundle = (field: string, value: unknown): string | undefined => {
    if (typeof value !== 'string') return undefined;
    const normalized = path.posix.normalize(value);
    if (path.posix.isAbsolute(value) || normalized.startsWith('../') || normalized === '..') {
      problems.push({ field, message: `is ${value}; paths in a bundle's config are relative to the bundle (e.g. "kernel"), so the bundle can be imported and moved` });
      return undefined;
    }
    if (!bundleFiles.has(normalized)) {
      problems.push({ field, message: `names ${value}, which is not a file in the bundle; add the file or fix the path` });
      return undefined;
    }
    return normalized;
  };
  const boot = (config['boot-source'] ?? undefined) as Record<string, unknown> | undefined;
  if (boot === undefined) problems.push({ field: 'boot-source', message: 'is required: a bundle boots its own kernel' });
  const kernel = inBundle('boot-source.kernel_image_path', boot?.kernel_image_path);
  const initrd = boot?.initrd_path === null || boot?.initrd_path === undefined ? null : inBundle('boot-source.initrd_path', boot.initrd_path);

  const drives = (Array.isArray(config.drives) ? config.drives : []) as DriveLike[];
  const roots = drives.map((d, i) => ({ d, i })).filter(({ d }) => d.is_root_device === true);
  let rootfs: string | undefined;
  if (roots.length !== 1) {
    problems.push({ field: 'drives', message: `has ${roots.length} drives with is_root_device true; a bundle has exactly one, its root image` });
  }
  drives.forEach((drive, i) => {
    if (drive.is_root_device === true) {
      if (drive.path_on_host === null || drive.path_on_host === undefined) problems.push({ field: `drives[${i}].path_on_host`, message: 'is required for the root drive: the bundle carries its root image' });
      else if (roots.length === 1) rootfs = inBundle(`drives[${i}].path_on_host`, drive.path_on_host);
    } else if (drive.path_on_host !== null && drive.path_on_host !== undefined) {
      inBundle(`drives[${i}].path_on_host`, drive.path_on_host);
    }
  });
  const slots = new Set(drives.map((d) => d.drive_id));
  for (const name of manifestDrives) {
    if (!slots.has(name)) problems.push({ field: 'drives', message: `has no slot with drive_id "${name}", a drive the role manifest declares; rebuild the bundle from the same role` });
  }
  if (problems.length > 0 || kernel === undefined || rootfs === undefined || initrd === undefined) return { problems };
  return { paths: { kernel, initrd, rootfs }, problems };
}
