#!/usr/bin/env node
// The `mvm-actors` executable. The sources are TypeScript; tsx loads them in-process, so a
// fresh `npm ci` is enough to run the CLI (there is no build step to forget).
import { tsImport } from 'tsx/esm/api';

// `mvm-actors ... | head` closes the pipe early; that is the reader's choice, not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw error;
  });
}

const { main } = await tsImport('./main.ts', import.meta.url);
process.exitCode = await main(process.argv.slice(2));
