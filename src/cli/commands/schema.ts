import { isPublishedSchemaName, PUBLISHED_SCHEMAS, toJsonSchema } from '../../schemas/json-schema.ts';
import { EXIT, printJson, UsageError, type Output } from '../output.ts';

/** `mvm-actors schema [name]`: the JSON Schema of a published document, or the list of names. */
export function schemaCommand(options: { name?: string | undefined; json: boolean }, output: Output): number {
  const names = Object.keys(PUBLISHED_SCHEMAS);
  if (options.name === undefined) {
    if (options.json) printJson(output, { schemas: names });
    else output.out(`Schemas: ${names.join(', ')}\nPrint one with: mvm-actors schema <name>`);
    return EXIT.ok;
  }
  if (!isPublishedSchemaName(options.name)) {
    throw new UsageError(`unknown schema "${options.name}"; choose one of: ${names.join(', ')}`);
  }
  printJson(output, toJsonSchema(options.name));
  return EXIT.ok;
}
