import type { z } from 'zod';

/** One problem found in a document, located by its JSON path. Shared by every validator and the CLI. */
export interface Issue {
  /** Human path, e.g. `tenants[0].pools[1].role`; empty string for the document root. */
  path: string;
  /** The same path as segments, for tools. */
  segments: (string | number)[];
  /** Stable, machine-readable kind of problem. */
  code: string;
  message: string;
  /** How to fix it, where there is more to say than the message. */
  hint?: string;
}

export function formatPath(segments: readonly PropertyKey[]): string {
  let out = '';
  for (const segment of segments) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out === '' ? String(segment) : `.${String(segment)}`;
  }
  return out;
}

export function issue(segments: (string | number)[], code: string, message: string, hint?: string): Issue {
  return hint === undefined ? { path: formatPath(segments), segments, code, message } : { path: formatPath(segments), segments, code, message, hint };
}

/** Zod issues as our issues, with their paths placed under `prefix`. */
export function fromZodError(error: z.ZodError, prefix: (string | number)[] = []): Issue[] {
  return error.issues.map((zodIssue) => {
    const segments = [...prefix, ...zodIssue.path.map((s) => (typeof s === 'symbol' ? String(s) : s))];
    let message = zodIssue.message;
    let hint: string | undefined;
    if (zodIssue.code === 'unrecognized_keys') {
      hint = 'remove the field, or check its spelling against `mvm-actors schema`';
    } else if (zodIssue.code === 'invalid_type' && message.includes('received undefined')) {
      message = `${formatPath(segments) || 'value'} is required`;
    }
    return issue(segments, zodIssue.code, message, hint);
  });
}

/** One line per issue: `path: message (hint)`. */
export function formatIssues(issues: readonly Issue[]): string {
  return issues.map((i) => `  ✖ ${i.path || '(document)'}: ${i.message}${i.hint ? `\n      hint: ${i.hint}` : ''}`).join('\n');
}
