import { readFile } from 'node:fs/promises';
import { isoTime } from '../../common/clock.ts';
import { connect, table, type ConnectOptions } from '../client.ts';
import { EXIT, printJson, UsageError, type Output } from '../output.ts';

export interface SecretOptions extends ConnectOptions {
  json: boolean;
  /** set, list or delete, then its arguments. */
  args: string[];
  fromFile?: string | undefined;
  /** The value when no --from-file is given (default: all of standard input). */
  stdin?: () => Promise<string>;
}

const USAGE = 'secret set <tenant> <name> [--from-file F] | secret list <tenant> | secret delete <tenant> <name>';

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write('secret value (end with Ctrl-D):\n');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The value as given, less the one line break that `echo` and editors add at the end. */
async function readValue(options: SecretOptions): Promise<string> {
  let text: string;
  if (options.fromFile !== undefined) {
    try {
      text = await readFile(options.fromFile, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new UsageError(code === 'ENOENT' ? `--from-file ${options.fromFile}: no such file` : `--from-file ${options.fromFile}: cannot read (${code ?? (error as Error).message})`);
    }
  } else text = await (options.stdin ?? readStdin)();
  const value = text.replace(/\r?\n$/, '');
  if (value === '') throw new UsageError(`secret set: the value is empty (${options.fromFile !== undefined ? `--from-file ${options.fromFile}` : 'standard input'})`);
  return value;
}

function expect(args: string[], count: number, what: string): void {
  if (args.length < count) throw new UsageError(`secret ${args[0]}: ${what}; usage: ${USAGE}`);
}

/**
 * `mvm-actors secret set|list|delete`. Values are write-only: they are read from --from-file or
 * standard input, never from an argument (arguments land in shell history and in `ps`), and no
 * command prints one.
 */
export async function secretCommand(options: SecretOptions, output: Output): Promise<number> {
  const [action, tenant, name, ...extra] = options.args;
  switch (action) {
    case 'set': {
      expect(options.args, 3, 'give the tenant and the secret name');
      if (extra.length > 0) {
        throw new UsageError(
          'secret set: the value is never taken from an argument (arguments land in shell history and in `ps`); pass --from-file F or pipe it on standard input, e.g. `mvm-actors secret set acme telegram-bot-token < token.txt`',
        );
      }
      const value = await readValue(options);
      const reply = await connect(options).putSecret(tenant!, name!, value);
      if (options.json) printJson(output, reply);
      else output.out(`secret ${reply.name} of ${reply.tenant_id} set; secrets_epoch ${reply.secrets_epoch}`);
      return EXIT.ok;
    }
    case 'list': {
      expect(options.args, 2, 'give the tenant');
      if (name !== undefined) throw new UsageError(`secret list: unexpected argument "${name}"; usage: ${USAGE}`);
      if (options.fromFile !== undefined) throw new UsageError('secret list: --from-file only goes with secret set');
      const reply = await connect(options).secrets(tenant!);
      if (options.json) printJson(output, reply);
      else if (reply.secrets.length === 0) output.out(`tenant ${tenant} has no secrets`);
      else
        output.out(
          table(
            ['NAME', 'EPOCH', 'STATE', 'UPDATED'],
            reply.secrets.map((s) => [s.name, String(s.epoch), s.state, isoTime(s.updated_at)]),
          ),
        );
      return EXIT.ok;
    }
    case 'delete': {
      expect(options.args, 3, 'give the tenant and the secret name');
      if (extra.length > 0) throw new UsageError(`secret delete: unexpected argument "${extra[0]}"; usage: ${USAGE}`);
      if (options.fromFile !== undefined) throw new UsageError('secret delete: --from-file only goes with secret set');
      const reply = await connect(options).deleteSecret(tenant!, name!);
      if (options.json) printJson(output, reply);
      else output.out(`secret ${reply.name} of ${reply.tenant_id} deleted; secrets_epoch ${reply.secrets_epoch}`);
      return EXIT.ok;
    }
    default:
      throw new UsageError(action === undefined ? `secret: say what to do; usage: ${USAGE}` : `secret: unknown action "${action}"; usage: ${USAGE}`);
  }
}
