import { connect, type ConnectOptions } from '../client.ts';
import { EXIT, printJson, type Output } from '../output.ts';

export type InstanceCommand = 'sleep' | 'wake' | 'stop' | 'start';

export interface CommandOptions extends ConnectOptions {
  command: InstanceCommand;
  id: string;
  json: boolean;
}

/**
 * `mvm-actors sleep|wake|stop|start <id>`: asks the instance's actor. Prints "accepted" (the
 * actor takes it from there; `events --follow` shows the transitions). A refusal (409) exits 1
 * with its machine-readable reason, e.g. sleep-floor:gateway:1.
 */
export async function instanceCommand(options: CommandOptions, output: Output): Promise<number> {
  const reply = await connect(options).command(options.command, options.id);
  if (options.json) printJson(output, reply);
  else output.out(`accepted: ${options.command} ${reply.instance_id}${reply.reason ? ` (${reply.reason})` : ''}`);
  return EXIT.ok;
}
