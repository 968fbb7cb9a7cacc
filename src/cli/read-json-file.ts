import { readFile } from 'node:fs/promises';
import { parse as parseTolerant, printParseErrorCode, type ParseError } from 'jsonc-parser';
import { UsageError } from './output.ts';

/** Line and column (1-based) of a character offset, for JSON syntax errors people can find. */
function lineAndColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - before.lastIndexOf('\n');
  return `line ${line}, column ${column}`;
}

/** Reads and parses a JSON file (`-` for stdin); bad JSON becomes a one-line message with its position. */
export async function readJsonFile(file: string, stdin: () => Promise<string> = readStdin): Promise<unknown> {
  let text: string;
  try {
    text = file === '-' ? await stdin() : await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(code === 'ENOENT' ? `${file}: no such file` : `${file}: cannot read (${code ?? (error as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch {
    // V8 on Node 20 does not say where the error is; a tolerant parser does.
    const errors: ParseError[] = [];
    parseTolerant(text, errors, { disallowComments: true, allowTrailingComma: false });
    const first = errors[0];
    const what = first
      ? printParseErrorCode(first.error)
          .replace(/([a-z])([A-Z])/g, '$1 $2')
          .toLowerCase()
      : 'malformed JSON';
    const where = first ? ` at ${lineAndColumn(text, first.offset)}` : '';
    throw new UsageError(text.trim() === '' ? `${file} is empty; expected a JSON document` : `${file} is not valid JSON${where}: ${what}`);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
