import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { WebSocket } from 'ws';
import type { Host, HostEvent } from '../../host/host.ts';
import type { JournalEntry } from '../../store/records.ts';
import { EventsQuery } from '../api-schemas.ts';

/** Close code for a client that cannot keep up (application range 4000-4999). */
export const CLOSE_SLOW_CONSUMER = 4008;
const REPLAY_PAGE = 1_000;

/**
 * GET /v1/events (WebSocket): replays the journal after `?since=<seq>`, then streams new entries
 * live, each as `{"type":"journal","entry":{...}}`. Live entries are buffered from the moment the
 * socket opens, so nothing falls between the replay and the stream. A client whose unsent
 * backlog grows past the limit is closed with code 4008 instead of growing the server's memory;
 * it reconnects with `since` = the last seq it saw. After the replay (and whatever arrived while it
 * ran) comes one `{"type":"replayed","seq":N}`, so a client can tell the past from the live stream.
 */
export const eventsRoutes: FastifyPluginAsyncZod<{ host: Host; maxBacklog: number }> = async (app, { host, maxBacklog }) => {
  app.get('/events', { websocket: true, schema: { querystring: EventsQuery } }, async (socket: WebSocket, request) => {
    let lastSent = request.query.since;
    let replaying = true;
    const held: JournalEntry[] = [];
    const send = (entry: JournalEntry): boolean => {
      if (entry.seq <= lastSent) return true;
      if (socket.readyState !== socket.OPEN) return false;
      if (socket.bufferedAmount > maxBacklog) {
        socket.close(CLOSE_SLOW_CONSUMER, `too slow: more than ${maxBacklog} bytes unsent; reconnect with since=${lastSent}`);
        return false;
      }
      socket.send(JSON.stringify({ type: 'journal', entry }));
      lastSent = entry.seq;
      return true;
    };
    const unsubscribe = host.subscribe((event: HostEvent) => {
      if (replaying) held.push(event.entry);
      else send(event.entry);
    });
    socket.on('close', unsubscribe);
    socket.on('error', unsubscribe);

    await host.flush();
    for (let page = host.journal({ sinceSeq: lastSent, limit: REPLAY_PAGE }); page.length > 0; page = host.journal({ sinceSeq: lastSent, limit: REPLAY_PAGE })) {
      for (const entry of page) if (!send(entry)) return unsubscribe();
      if (page.length < REPLAY_PAGE) break;
    }
    replaying = false;
    for (const entry of held.splice(0)) if (!send(entry)) return unsubscribe();
    // Everything journaled before this point has been sent: a client that only wanted the past stops here.
    if (socket.readyState === socket.OPEN) socket.send(JSON.stringify({ type: 'replayed', seq: lastSent }));
  });
};
