import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Host } from '../../host/host.ts';

/** GET /viz: the statechart visualizer (a page with no network access beyond this server). */
export const visualizerRoutes: FastifyPluginAsyncZod<{ host: Host }> = async (app) => {
  app.get('/viz', { schema: { hide: true } }, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').send('<!doctype html><title>mvm-actors</title><p>The visualizer is being built.</p>'),
  );
};
