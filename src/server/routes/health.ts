import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Host } from '../../host/host.ts';

/** GET /healthz (no auth) and GET /metrics (Prometheus text). */
export const healthRoutes: FastifyPluginAsyncZod<{ host: Host }> = async (app, { host }) => {
  app.get('/healthz', { schema: { security: [], response: { 200: z.object({ status: z.literal('ok'), generation: z.number() }) } } }, async () => ({
    status: 'ok' as const,
    generation: host.generation,
  }));

  app.get('/metrics', { schema: { security: [], hide: true } }, async (_request, reply) => {
    const stats = host.stats();
    const lines: string[] = [
      '# HELP mvm_instances Instances by role and status.',
      '# TYPE mvm_instances gauge',
      ...stats.instances.map((i) => `mvm_instances{role="${i.role}",status="${i.status}"} ${i.count}`),
      '# HELP mvm_transitions_total Instance status transitions journaled.',
      '# TYPE mvm_transitions_total counter',
      `mvm_transitions_total ${stats.transitions}`,
      '# HELP mvm_refusals_total Commands refused (sleep floor, quota).',
      '# TYPE mvm_refusals_total counter',
      `mvm_refusals_total ${stats.refusals}`,
      '# HELP mvm_deferred_total Commands deferred until a minimum runtime.',
      '# TYPE mvm_deferred_total counter',
      `mvm_deferred_total ${stats.deferrals}`,
      '# HELP mvm_reconcile_duration_seconds Duration of the last desired-state apply.',
      '# TYPE mvm_reconcile_duration_seconds gauge',
      `mvm_reconcile_duration_seconds ${(stats.lastApplyMs / 1000).toFixed(3)}`,
      '# HELP mvm_desired_generation Generation of the applied desired state (-1: none).',
      '# TYPE mvm_desired_generation gauge',
      `mvm_desired_generation ${stats.generation}`,
      '# HELP mvm_lmdb_commit_latency_seconds LMDB batch commit latency (last, average, max).',
      '# TYPE mvm_lmdb_commit_latency_seconds gauge',
      `mvm_lmdb_commit_latency_seconds{stat="last"} ${(stats.store.commitLatencyMs.last / 1000).toFixed(4)}`,
      `mvm_lmdb_commit_latency_seconds{stat="avg"} ${(stats.store.commitLatencyMs.avg / 1000).toFixed(4)}`,
      `mvm_lmdb_commit_latency_seconds{stat="max"} ${(stats.store.commitLatencyMs.max / 1000).toFixed(4)}`,
      '# HELP mvm_lmdb_batches_total LMDB batches committed.',
      '# TYPE mvm_lmdb_batches_total counter',
      `mvm_lmdb_batches_total ${stats.store.batchesCommitted}`,
    ];
    return reply.type('text/plain; version=0.0.4').send(`${lines.join('\n')}\n`);
  });
};
