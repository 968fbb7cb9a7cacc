import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Host } from '../../host/host.ts';
import { SecretBody, SecretInfo, SecretParams, SecretReply, TenantParams, TenantView } from '../api-schemas.ts';
import { ApiError, ErrorEnvelope } from '../errors.ts';

/** GET /v1/tenants, /v1/tenants/:tenant, and the write-only secrets of a tenant. */
export const tenantRoutes: FastifyPluginAsyncZod<{ host: Host }> = async (app, { host }) => {
  app.get('/tenants', { schema: { response: { 200: z.object({ tenants: z.array(TenantView) }) } } }, async () => ({ tenants: host.tenants() }));

  app.get('/tenants/:tenant', { schema: { params: TenantParams, response: { 200: TenantView.extend({ secrets: z.array(SecretInfo) }), 404: ErrorEnvelope } } }, async (request) => {
    const tenant = host.tenants().find((t) => t.tenant_id === request.params.tenant);
    if (!tenant) throw new ApiError('MVM_ERR_NOT_FOUND', `unknown tenant "${request.params.tenant}"`);
    return { ...tenant, secrets: host.secrets.list(tenant.tenant_id) };
  });

  // Secrets are write-only: no route ever returns a value; listing shows names and epochs.
  app.get('/tenants/:tenant/secrets', { schema: { params: TenantParams, response: { 200: z.object({ secrets: z.array(SecretInfo) }) } } }, async (request) => ({
    secrets: host.secrets.list(request.params.tenant),
  }));

  app.put('/tenants/:tenant/secrets/:name', { schema: { params: SecretParams, body: SecretBody, response: { 200: SecretReply } } }, async (request) => {
    const epoch = host.secrets.put(request.params.tenant, request.params.name, request.body.value);
    await host.flush(); // acknowledged only once durable
    return { tenant_id: request.params.tenant, name: request.params.name, secrets_epoch: epoch };
  });

  app.delete('/tenants/:tenant/secrets/:name', { schema: { params: SecretParams, response: { 200: SecretReply, 404: ErrorEnvelope } } }, async (request) => {
    const existed = host.secrets.delete(request.params.tenant, request.params.name);
    if (!existed) throw new ApiError('MVM_ERR_NOT_FOUND', `tenant "${request.params.tenant}" has no secret "${request.params.name}"`);
    await host.flush();
    return { tenant_id: request.params.tenant, name: request.params.name, secrets_epoch: host.secrets.list(request.params.tenant).reduce((m, s) => Math.max(m, s.epoch), 0) };
  });
};
