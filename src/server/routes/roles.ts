import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { composeInstanceChart, fullOptions } from '../../../machines/compose-instance-chart.ts';
import { chartToDot, chartToMermaid } from '../../../machines/render-chart.ts';
import type { Host } from '../../host/host.ts';
import { RoleParams } from '../api-schemas.ts';
import { ApiError, ErrorEnvelope } from '../errors.ts';

/** GET /v1/roles, /v1/roles/:role, /v1/roles/:role/chart. */
export const roleRoutes: FastifyPluginAsyncZod<{ host: Host }> = async (app, { host }) => {
  const role = (name: string) => {
    const loaded = host.catalog.roles.get(name);
    if (!loaded) throw new ApiError('MVM_ERR_NOT_FOUND', `unknown role "${name}"; loaded roles: ${[...host.catalog.roles.keys()].sort().join(', ')}`);
    return loaded;
  };

  app.get('/roles', { schema: { response: { 200: z.object({ roles: z.array(z.unknown()) }) } } }, async () => ({
    roles: [...host.catalog.roles.values()].sort((a, b) => a.manifest.name.localeCompare(b.manifest.name)).map((r) => ({ ...r.manifest, manifest_hash: r.hash })),
  }));

  app.get('/roles/:role', { schema: { params: RoleParams, response: { 200: z.unknown(), 404: ErrorEnvelope } } }, async (request) => {
    const loaded = role(request.params.role);
    return { ...loaded.manifest, manifest_hash: loaded.hash };
  });

  app.get(
    '/roles/:role/chart',
    { schema: { params: RoleParams, querystring: z.object({ format: z.enum(['json', 'dot', 'mermaid']).default('json'), token: z.string().optional() }), response: { 200: z.unknown(), 404: ErrorEnvelope } } },
    async (request, reply) => {
      const loaded = role(request.params.role);
      const chart = composeInstanceChart(loaded.manifest, fullOptions(loaded.manifest));
      if (request.query.format === 'dot') return reply.type('text/vnd.graphviz').send(chartToDot(chart, `${loaded.manifest.name} instance`));
      if (request.query.format === 'mermaid') return reply.type('text/plain').send(chartToMermaid(chart));
      return chart;
    },
  );
};
