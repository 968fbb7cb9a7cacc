import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Host } from '../../host/host.ts';
import { CommandReply, InstanceDetail, InstanceParams, InstanceQuery, InstanceView } from '../api-schemas.ts';
import { ApiError, ErrorEnvelope } from '../errors.ts';

const COMMANDS = ['sleep', 'wake', 'stop', 'start'] as const;

/** GET /v1/instances, /v1/instances/:id, POST /v1/instances/:id/{sleep,wake,stop,start}. */
export const instanceRoutes: FastifyPluginAsyncZod<{ host: Host }> = async (app, { host }) => {
  app.get('/instances', { schema: { querystring: InstanceQuery.extend({ token: z.string().optional() }), response: { 200: z.object({ instances: z.array(InstanceView) }) } } }, async (request) => {
    const { tenant, pool, role, state } = request.query;
    return { instances: host.instances({ ...(tenant && { tenant }), ...(pool && { pool }), ...(role && { role }), ...(state && { status: state }) }) };
  });

  app.get('/instances/:id', { schema: { params: InstanceParams, response: { 200: InstanceDetail, 404: ErrorEnvelope } } }, async (request) => {
    const instance = host.instance(request.params.id);
    if (!instance) throw new ApiError('MVM_ERR_NOT_FOUND', `unknown instance "${request.params.id}"`);
    await host.flush();
    const journal = host.journal({ instanceId: request.params.id });
    return { ...instance, journal: journal.slice(-50) };
  });

  for (const command of COMMANDS) {
    app.post(`/instances/:id/${command}`, { schema: { params: InstanceParams, response: { 202: CommandReply, 404: ErrorEnvelope, 409: ErrorEnvelope } } }, async (request, reply) => {
      const id = request.params.id;
      if (!host.instance(id)) throw new ApiError('MVM_ERR_NOT_FOUND', `unknown instance "${id}"`);
      const result = host[command](id);
      if (!result.accepted) throw new ApiError('MVM_ERR_REFUSED', `${command} of ${id} refused: ${result.reason}`, { reason: result.reason ?? 'refused' });
      return reply.code(202).send({ accepted: true as const, instance_id: id, command, reason: result.reason });
    });
  }
};
