import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import { parse } from 'yaml';

/**
 * Firecracker's official API spec (src/firecracker/firecracker-api.yaml, v1.16.1) as validators:
 * the fake Firecracker checks every request body with them, and the VM config tests check the
 * generated `--config-file` documents. Swagger 2.0 schemas are JSON Schema draft 4 with a few
 * extras (`readOnly`, `example`, regex strings in `format`), so ajv runs non-strict and does not
 * validate formats.
 */

export const SPEC_FILE = fileURLToPath(new URL('../../src/firecracker/firecracker-api.yaml', import.meta.url));

interface Operation {
  parameters?: { in: string; name: string; schema?: { $ref?: string } }[];
}
interface SpecDocument {
  paths: Record<string, Record<string, Operation>>;
  definitions: Record<string, unknown>;
}

export interface RouteMatch {
  /** The spec's path template, e.g. `/drives/{drive_id}`. */
  template: string;
  params: Record<string, string>;
  /** The body's definition name, when the operation takes a body. */
  bodyDefinition: string | null;
}

export class FirecrackerSpec {
  readonly document: SpecDocument;
  readonly #ajv: Ajv;
  readonly #validators = new Map<string, ValidateFunction>();

  constructor(file = SPEC_FILE) {
    this.document = parse(readFileSync(file, 'utf8')) as SpecDocument;
    this.#ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
    this.#ajv.addSchema({ $id: 'firecracker', definitions: closeObjects(this.document.definitions) });
  }

  /** Problems of `value` against definition `name` (empty when valid), each naming the field. */
  validate(name: string, value: unknown): string[] {
    if (!(name in this.document.definitions)) throw new Error(`the spec has no definition ${name}`);
    let validator = this.#validators.get(name);
    if (!validator) {
      validator = this.#ajv.compile({ $ref: `firecracker#/definitions/${name}` });
      this.#validators.set(name, validator);
    }
    if (validator(value)) return [];
    return (validator.errors ?? []).map((e) => `${name}${e.instancePath || ''} ${e.message ?? 'is invalid'}${e.params && 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : ''}`);
  }

  /** The operation for a method and a concrete path, or null when the spec has none. */
  route(method: string, path: string): RouteMatch | null {
    const lower = method.toLowerCase();
    for (const [template, item] of Object.entries(this.document.paths)) {
      const operation = item[lower];
      if (!operation) continue;
      const names: string[] = [];
      const pattern = new RegExp(
        `^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{([a-z_]+)\}/g, (_m, name: string) => {
          names.push(name);
          return '([^/]+)';
        })}$`,
      );
      const match = pattern.exec(path);
      if (!match) continue;
      const params = Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(match[i + 1]!)]));
      const ref = operation.parameters?.find((p) => p.in === 'body')?.schema?.$ref;
      return { template, params, bodyDefinition: ref ? ref.replace('#/definitions/', '') : null };
    }
    return null;
  }
}

/**
 * Firecracker deserializes request bodies with serde's `deny_unknown_fields`, so a misspelled
 * field is a 400, not silently ignored: every object definition with declared properties is
 * closed here (`additionalProperties: false`), unless it says otherwise.
 */
function closeObjects(definitions: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(definitions)) {
    const s = schema as { properties?: unknown; additionalProperties?: unknown };
    out[name] = s.properties && s.additionalProperties === undefined ? { ...s, additionalProperties: false } : s;
  }
  return out;
}

/** The `--config-file` document's sections and the definition each one must satisfy. */
export const CONFIG_FILE_SECTIONS: Record<string, { definition: string; array: boolean }> = {
  'boot-source': { definition: 'BootSource', array: false },
  drives: { definition: 'Drive', array: true },
  'machine-config': { definition: 'MachineConfiguration', array: false },
  'network-interfaces': { definition: 'NetworkInterface', array: true },
  vsock: { definition: 'Vsock', array: false },
  logger: { definition: 'Logger', array: false },
  metrics: { definition: 'Metrics', array: false },
  entropy: { definition: 'EntropyDevice', array: false },
};
