import websocket from '@fastify/websocket';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, jsonSchemaTransform, serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import type { Host } from '../host/host.ts';
import { ApiError, envelope } from './errors.ts';
import { desiredStateRoutes } from './routes/desired-state.ts';
import { eventsRoutes } from './routes/events.ts';
import { healthRoutes } from './routes/health.ts';
import { instanceRoutes } from './routes/instances.ts';
import { roleRoutes } from './routes/roles.ts';
import { tenantRoutes } from './routes/tenants.ts';
import { visualizerRoutes } from './routes/visualizer.ts';
import { tokenMatches } from './token.ts';

export interface ServerOptions {
  /** Bearer token every /v1 route and the visualizer require. */
  token: string;
  logger?: Logger;
  /** Largest request body accepted (default 4 MiB: a desired state for thousands of tenants). */
  bodyLimit?: number;
  /** WebSocket clients whose unsent backlog passes this many bytes are disconnected (default 8 MiB). */
  maxEventBacklog?: number;
}

/** The bearer token from the Authorization header, or from `?token=` (browsers cannot set headers on WebSockets or page loads). */
function presentedToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header?.startsWith('Bearer ')) return header.slice('Bearer '.length).trim();
  const query = request.query as { token?: unknown } | undefined;
  return typeof query?.token === 'string' ? query.token : undefined;
}

/**
 * The HTTP and WebSocket API over a host, as a fastify instance that does not listen yet (tests
 * use inject; `mvm-actors serve` listens). Each route group is an encapsulated plugin with zod
 * schemas; every error is one envelope: { statusCode, code, message, issues?, reason? }.
 */
export async function createServer(host: Host, options: ServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    // pino's Logger and fastify's FastifyBaseLogger differ only in types.
    ...(options.logger ? { loggerInstance: options.logger as never } : { logger: false }),
    bodyLimit: options.bodyLimit ?? 4 * 1024 * 1024,
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  app.setErrorHandler((error, request, reply) => {
    if (error instanceof ApiError) return reply.code(error.statusCode).send(envelope(error.code, error.message, error.extra));
    if (hasZodFastifySchemaValidationErrors(error)) {
      const issues = error.validation.map((v) => ({ path: `${error.validationContext ?? ''}${v.instancePath.replaceAll('/', '.')}`, message: v.message ?? 'invalid' }));
      return reply.code(400).send(envelope('MVM_ERR_VALIDATION', `invalid request ${error.validationContext ?? ''}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { issues }));
    }
    const status = (error as { statusCode?: number }).statusCode;
    if (status === 413) return reply.code(413).send(envelope('MVM_ERR_BODY_TOO_LARGE', `request body is larger than ${options.bodyLimit ?? 4 * 1024 * 1024} bytes`));
    if (status === 400 || status === 415) {
      return reply.code(400).send(envelope('MVM_ERR_VALIDATION', (error as Error).message, { issues: [{ path: 'body', message: (error as Error).message }] }));
    }
    request.log.error({ err: error }, 'request failed');
    return reply.code(500).send(envelope('MVM_ERR_INTERNAL', 'internal error; see the server log'));
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send(envelope('MVM_ERR_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)));

  await app.register(swagger, {
    openapi: {
      info: { title: 'mvm-actors host API', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });
  await app.register(websocket, { options: { maxPayload: 64 * 1024 } });

  await app.register(healthRoutes, { host });

  // Everything under /v1 and the visualizer needs the token.
  await app.register(async (authed) => {
    authed.addHook('onRequest', async (request) => {
      if (!tokenMatches(options.token, presentedToken(request))) {
        throw new ApiError('MVM_ERR_UNAUTHORIZED', 'missing or wrong bearer token: send "Authorization: Bearer <token>" (the token is in <data-dir>/api-token)');
      }
    });
    await authed.register(desiredStateRoutes, { prefix: '/v1', host });
    await authed.register(roleRoutes, { prefix: '/v1', host });
    await authed.register(tenantRoutes, { prefix: '/v1', host });
    await authed.register(instanceRoutes, { prefix: '/v1', host });
    await authed.register(eventsRoutes, { prefix: '/v1', host, maxBacklog: options.maxEventBacklog ?? 8 * 1024 * 1024 });
    await authed.register(visualizerRoutes, { host });
  });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  return app as unknown as FastifyInstance;
}
