/**
 * Child process of the API bench (part 6): runs the clients of api-clients.ts on request over the
 * IPC channel, so the load generator and the subscribers do not share the server's event loop.
 * Started by api.ts with fork() (tsx's loader is inherited through execArgv).
 */
import { loadRun, sequentialGets, subscribeEvents, type GetsOptions, type LoadOptions, type SubscribeOptions } from './api-clients.ts';

export type ClientRequest =
  | { id: number; op: 'gets'; options: GetsOptions }
  | { id: number; op: 'load'; options: LoadOptions }
  | { id: number; op: 'subscribe'; options: SubscribeOptions }
  | { id: number; op: 'exit' };

export type ClientReply = { id: number; kind: 'result'; result: unknown } | { id: number; kind: 'ready' } | { id: number; kind: 'error'; message: string } | { id: 0; kind: 'started' };

const send = (reply: ClientReply): void => {
  process.send?.(reply);
};

process.on('message', (request: ClientRequest) => {
  const { id } = request;
  const run = async (): Promise<unknown> => {
    switch (request.op) {
      case 'gets':
        return sequentialGets(request.options);
      case 'load':
        return loadRun(request.options);
      case 'subscribe':
        return subscribeEvents(request.options, () => send({ id, kind: 'ready' }));
      case 'exit':
        process.disconnect();
        return undefined;
    }
  };
  run().then(
    (result) => {
      if (request.op !== 'exit') send({ id, kind: 'result', result });
    },
    (error: unknown) => send({ id, kind: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
  );
});

send({ id: 0, kind: 'started' });
