import { connect, table, type ConnectOptions } from '../client.ts';
import { EXIT, printJson, type Output } from '../output.ts';
import { readJsonFile } from '../read-json-file.ts';
import { rejectedLines } from './apply.ts';

export interface PlanOptions extends ConnectOptions {
  file: string;
  json: boolean;
}

/** `mvm-actors plan <desired.json|->`: what applying the document would do, in order, without doing it. */
export async function planCommand(options: PlanOptions, output: Output): Promise<number> {
  const document = await readJsonFile(options.file);
  const plan = await connect(options).plan(document);
  const partial = plan.issues.length > 0;
  if (options.json) {
    printJson(output, plan);
    return partial ? EXIT.invalid : EXIT.ok;
  }
  const n = plan.steps.length;
  if (n === 0) output.out(`generation ${plan.generation}: nothing to do`);
  else {
    output.out(`generation ${plan.generation}: ${n} step${n === 1 ? '' : 's'}`);
    output.out(
      table(
        ['OP', 'INSTANCE', 'ROLE', 'FROM → TARGET'],
        plan.steps.map((s) => [s.op, s.instance_id, s.role, `${s.from ?? '-'} → ${s.target}`]),
      ),
    );
  }
  if (partial) output.err(rejectedLines(plan).join('\n'));
  return partial ? EXIT.invalid : EXIT.ok;
}
