import { readFileSync } from 'node:fs';
import { z } from 'zod';

/**
 * How an OpenClaw service runs inside an instance (paths, environment, the start marker), read
 * from nix/profiles/openclaw/service.json: the same file the NixOS profiles read for their
 * systemd units (nix/profiles/openclaw/units.nix), so the simulator and a real guest cannot
 * drift apart on a path or a flag.
 */

const LAYOUT_KEYS = ['home', 'stateDir', 'workspace', 'logFile', 'cacheDir', 'compileCache', 'tmpDir', 'configPath', 'serviceOutput'] as const;
const LayoutKey = z.enum(LAYOUT_KEYS);
const EnvName = z.string().regex(/^[A-Z_][A-Z0-9_]*$/, { error: 'environment variable names are upper-case identifiers' });

export const OpenClawServiceSpec = z
  .object({
    $comment: z.string().optional(),
    layout: z.record(LayoutKey, z.string().startsWith('@')).refine((layout) => LAYOUT_KEYS.every((key) => key in layout), { error: `layout must name every one of ${LAYOUT_KEYS.join(', ')}` }),
    env: z.record(EnvName, LayoutKey),
    constant_env: z.record(EnvName, z.string()),
    start_marker: z.string().min(1).regex(/^[^\n]+$/),
    config_error_exit_status: z.number().int().min(1).max(255),
  })
  .strict();
export type OpenClawServiceSpec = z.infer<typeof OpenClawServiceSpec>;
export type LayoutKey = z.infer<typeof LayoutKey>;

export const SERVICE_SPEC_FILE = new URL('../../nix/profiles/openclaw/service.json', import.meta.url);

function load(): OpenClawServiceSpec {
  const parsed = OpenClawServiceSpec.safeParse(JSON.parse(readFileSync(SERVICE_SPEC_FILE, 'utf8')));
  if (!parsed.success) throw new Error(`${SERVICE_SPEC_FILE.pathname}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

export const openclawServiceSpec: OpenClawServiceSpec = load();

export interface TemplateValues {
  data: string;
  config: string;
  tmp: string;
  config_file: string;
  service?: string;
}

/** Fills a path template of the spec; the Nix side does the same with builtins.replaceStrings. */
export function fillTemplate(template: string, values: TemplateValues): string {
  return template.replace(/@([a-z_]+)@/g, (whole, name: string) => {
    const value = (values as unknown as Record<string, string | undefined>)[name];
    if (value === undefined) throw new Error(`${SERVICE_SPEC_FILE.pathname}: template ${template} uses ${whole}, which has no value here`);
    return value;
  });
}
