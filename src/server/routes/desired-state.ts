import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Host } from '../../host/host.ts';
import { ApplyReply, DesiredStateReply, PlanReply } from '../api-schemas.ts';
import { ApiError, ErrorEnvelope } from '../errors.ts';

// The body is validated by the host (layered, every problem with its path, roles from the loaded
// manifests), not by a route schema, which would stop at the first failing part.
const Document = z.unknown().describe('A desired-state document (see `mvm-actors schema desired-state`).');

/** PUT/GET /v1/desired-state and POST /v1/plan. */
export const desiredStateRoutes: FastifyPluginAsyncZod<{ host: Host }> = async (app, { host }) => {
  app.put('/desired-state', { schema: { body: Document, response: { 200: ApplyReply, 400: ErrorEnvelope, 409: ErrorEnvelope } } }, async (request) => {
    const result = await host.apply(request.body);
    if (!result.applied) {
      if (result.refusal?.startsWith('stale-generation')) {
        throw new ApiError('MVM_ERR_STALE_GENERATION', `generation is older than the applied generation ${result.generation}`, { reason: result.refusal });
      }
      throw new ApiError('MVM_ERR_VALIDATION', `the desired state is invalid: ${result.issues.length} problem(s)`, { issues: result.issues });
    }
    return { applied: true as const, generation: result.generation, steps: result.plan!.steps.length, issues: result.issues, rejected: result.rejected };
  });

  app.get('/desired-state', { schema: { response: { 200: DesiredStateReply, 404: ErrorEnvelope } } }, async () => {
    const document = host.desiredState();
    if (!document) throw new ApiError('MVM_ERR_NOT_FOUND', 'no desired state has been applied yet');
    return { generation: host.generation, document };
  });

  app.post('/plan', { schema: { body: Document, response: { 200: PlanReply, 400: ErrorEnvelope, 409: ErrorEnvelope } } }, async (request) => {
    const { issues, rejected, plan, refusal } = host.plan(request.body);
    if (refusal?.startsWith('stale-generation')) {
      throw new ApiError('MVM_ERR_STALE_GENERATION', `generation is older than the applied generation ${host.generation}`, { reason: refusal });
    }
    if (!plan) throw new ApiError('MVM_ERR_VALIDATION', `the desired state is unusable: ${issues.length} problem(s)`, { issues });
    return { generation: plan.generation, steps: plan.steps, issues, rejected };
  });
};
