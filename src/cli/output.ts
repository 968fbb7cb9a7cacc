/** Where CLI commands write. Injected so tests can run commands in-process and read what they printed. */
export interface Output {
  out(text: string): void;
  err(text: string): void;
}

export const processOutput: Output = {
  out: (text) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
  err: (text) => process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
};

export function printJson(output: Output, value: unknown): void {
  output.out(JSON.stringify(value, null, 2));
}

/** Exit codes: 0 success, 1 the input was checked and found wanting, 2 the command could not run as asked. */
export const EXIT = { ok: 0, invalid: 1, usage: 2 } as const;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}
