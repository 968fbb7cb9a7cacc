import { connect, type ApplyResult, type ConnectOptions } from '../client.ts';
import { EXIT, printJson, type Output } from '../output.ts';
import { readJsonFile } from '../read-json-file.ts';

export interface ApplyOptions extends ConnectOptions {
  file: string;
  json: boolean;
}

/** The issues and rejected parts of an apply or plan that went through in part. */
export function rejectedLines(reply: Pick<ApplyResult, 'issues' | 'rejected'>): string[] {
  if (reply.issues.length === 0) return [];
  const n = reply.issues.length;
  const lines = [`${n} problem${n === 1 ? '' : 's'} in the document:`];
  for (const issue of reply.issues) {
    lines.push(`  ✖ ${issue.path || '(document)'}: ${issue.message}`);
    if (issue.hint) lines.push(`      hint: ${issue.hint}`);
  }
  const { tenants, pools } = reply.rejected;
  if (tenants.length > 0) lines.push(`rejected tenants: ${tenants.join(', ')}`);
  if (pools.length > 0) lines.push(`rejected pools: ${pools.join(', ')}`);
  return lines;
}

/**
 * `mvm-actors apply <desired.json|->`: PUT /v1/desired-state. Exit 0 when everything applied;
 * 1 when the server refused the document (every issue with its path; a stale generation) or
 * applied it only in part (the rejected tenants and pools are listed).
 */
export async function applyCommand(options: ApplyOptions, output: Output): Promise<number> {
  const document = await readJsonFile(options.file);
  const client = connect(options);
  const reply = await client.apply(document);
  const partial = reply.issues.length > 0;
  if (options.json) {
    printJson(output, reply);
    return partial ? EXIT.invalid : EXIT.ok;
  }
  output.out(`applied generation ${reply.generation} to ${client.url}: ${reply.steps} step${reply.steps === 1 ? '' : 's'}`);
  if (partial) {
    output.err(rejectedLines(reply).join('\n'));
    output.err('the rest of the document was applied; fix the problems above and apply again');
  }
  return partial ? EXIT.invalid : EXIT.ok;
}
