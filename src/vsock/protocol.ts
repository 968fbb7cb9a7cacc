import { z } from 'zod';
import { InstanceId, LocalName, RoleName, SecretName, TenantId } from '../schemas/ids.ts';
import { VSOCK_HANDLERS, VsockHandler } from '../schemas/role-manifest.ts';

/**
 * The vsock control protocol between the host and a guest's agent: the one definition both sides
 * import (src/vsock/host-client.ts on the host, src/guest/ in the guest).
 *
 * Wire format: each frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON
 * (one message). Frames larger than MAX_FRAME_BYTES are refused from their length alone.
 *
 * Conversation on every connection (the host connects; Firecracker's `CONNECT <port>` handshake
 * comes first, see firecracker-uds.ts):
 *   1. guest -> host `hello` (mandatory, first): protocol version, identity, enabled handlers.
 *   2. host -> guest `hello-ack`: the protocol version and the instance id the HOST bound to this
 *      socket (the socket's VM identity comes from the host, never from a payload).
 *   3. host -> guest `request`s; guest -> host one `response` per request id (any order).
 * A fatal problem gets an `error` frame from whichever side saw it, then the connection closes.
 */

export const PROTOCOL_VERSION = 1;
/** Largest frame body (the JSON after the 4-byte length), in bytes. */
export const MAX_FRAME_BYTES = 64 * 1024;
export const FRAME_HEADER_BYTES = 4;

/** The verbs are exactly the handlers a role may enable. */
export const VERBS = VSOCK_HANDLERS;
export type Verb = (typeof VSOCK_HANDLERS)[number];
export function isVerb(value: string): value is Verb {
  return (VERBS as readonly string[]).includes(value);
}

/**
 * Error codes carried on the wire. Fatal codes are followed by the sender closing the connection;
 * the others answer one request and the connection stays usable.
 */
export const WIRE_ERROR_CODES = [
  'unsupported',
  'bad-args',
  'config-unavailable',
  'internal',
  'bad-frame',
  'frame-too-large',
  'out-of-order',
  'version-mismatch',
  'wrong-instance',
] as const;
export const WireErrorCode = z.enum(WIRE_ERROR_CODES);
export type WireErrorCode = z.infer<typeof WireErrorCode>;

export const FATAL_ERROR_CODES: ReadonlySet<WireErrorCode> = new Set(['bad-frame', 'frame-too-large', 'out-of-order', 'version-mismatch', 'wrong-instance']);

/** What each code means, for docs and messages. */
export const WIRE_ERROR_MEANINGS: Record<WireErrorCode, string> = {
  unsupported: "the verb is not one of the handlers this guest's role enables (or not a verb at all)",
  'bad-args': "the request's args do not match the verb's schema",
  'config-unavailable': 'the config drive could not be read, or it names another identity',
  internal: 'the handler failed; the message says why',
  'bad-frame': 'the frame is not UTF-8 JSON, not a message of this protocol, or is empty',
  'frame-too-large': `the frame's length prefix exceeds the maximum (${MAX_FRAME_BYTES} bytes)`,
  'out-of-order': 'a message arrived before the handshake finished, or one that this side never sends first',
  'version-mismatch': 'the peer speaks another protocol version',
  'wrong-instance': 'the frame names another instance or tenant than the one bound to this socket',
};

const RequestId = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const ConfigVersion = z.number().int().min(0);
const SecretsEpoch = z.number().int().min(0);
const Message = z.string().max(2048);

export const WireError = z.object({ code: WireErrorCode, message: Message }).strict();
export type WireError = z.infer<typeof WireError>;

// ---------------------------------------------------------------------------------------------
// Handshake

export const Hello = z
  .object({
    type: z.literal('hello'),
    protocol_version: z.number().int().min(0),
    agent: z.object({ name: z.string().max(64), version: z.string().max(64) }).strict(),
    instance_id: InstanceId.nullable().describe('The instance this guest belongs to, from its config drive; null when the config drive is unreadable.'),
    tenant_id: TenantId.nullable(),
    role: RoleName.nullable(),
    handlers: z.array(VsockHandler).describe('The verbs this guest answers (its role manifest vsock.handlers).'),
    config_version: ConfigVersion.nullable(),
    secrets_epoch: SecretsEpoch.nullable(),
    config_error: Message.nullable().describe('Why the config drive could not be read; then only ping is enabled.'),
  })
  .strict()
  .meta({ id: 'VsockHello' });
export type Hello = z.infer<typeof Hello>;

export const HelloAck = z
  .object({
    type: z.literal('hello-ack'),
    protocol_version: z.number().int().min(0),
    instance_id: InstanceId.describe('The instance the host bound to this socket.'),
  })
  .strict()
  .meta({ id: 'VsockHelloAck' });
export type HelloAck = z.infer<typeof HelloAck>;

/** Just enough of a handshake message to compare versions before judging the rest of it. */
export const VersionProbe = z.looseObject({ protocol_version: z.number().int().min(0) });

// ---------------------------------------------------------------------------------------------
// Verbs: args and results

/**
 * Every request may name its target. The guest refuses (wrong-instance, fatal) a request naming an
 * instance or tenant other than its own; the host client fills in the socket's instance id.
 */
const Target = {
  instance_id: InstanceId.optional(),
  tenant_id: TenantId.optional(),
};

/** failed: will not become ready without a change (wrong credentials, refused by the service); not-ready: may still become ready. */
export const ServiceState = z.enum(['ready', 'not-ready', 'failed', 'unknown']);
export const ServiceProbeKind = z.enum(['tcp', 'process', 'openclaw-handshake', 'openclaw-node-connected', 'none']);
const ServiceReport = z
  .object({
    name: LocalName,
    state: ServiceState,
    probe: ServiceProbeKind,
    detail: Message.nullable(),
  })
  .strict();

export const ConnectorReport = z
  .object({
    name: LocalName,
    state: z.enum(['enabled', 'disabled']),
    reason: Message.nullable().describe('Why disabled, e.g. "missing-secret:telegram-bot-token".'),
    secrets_required: z.array(SecretName).nullable().describe('null when the config drive does not say which secrets the connector needs.'),
    secrets_missing: z.array(SecretName),
  })
  .strict();

export const JobState = z.enum(['none', 'pending', 'running', 'succeeded', 'failed']);

export const VerbArgs = {
  ping: z.object({ ...Target }).strict(),
  readiness: z.object({ ...Target, service: LocalName.optional() }).strict(),
  'service-status': z.object({ ...Target, service: LocalName.optional() }).strict(),
  drain: z.object({ ...Target, deadline_ms: z.number().int().min(0).max(86_400_000) }).strict(),
  'post-restore': z
    .object({
      ...Target,
      secrets_epoch: SecretsEpoch,
      entropy_seed: z
        .string()
        .min(24)
        .max(1024)
        .regex(/^[A-Za-z0-9+/]+={0,2}$/, { error: 'entropy_seed must be base64 (at least 16 bytes)' }),
    })
    .strict(),
  'config-reload': z.object({ ...Target, config_version: ConfigVersion }).strict(),
  'secrets-reload': z.object({ ...Target, secrets_epoch: SecretsEpoch }).strict(),
  'connector-status': z.object({ ...Target, connector: LocalName.optional() }).strict(),
  'job-status': z.object({ ...Target }).strict(),
  'openclaw-setup-code': z.object({ ...Target }).strict(),
} as const satisfies Record<Verb, z.ZodType>;

/** An instance this guest depends on (its tenant's gateway, for a worker), as the config drive names it. */
export const DependencyEndpoint = z
  .object({ role: LocalName, instance_id: InstanceId, ipv4: z.string(), ports: z.record(z.string(), z.number().int()) })
  .strict();

export const VerbResults = {
  ping: z.object({ pong: z.literal(true), instance_id: InstanceId.nullable(), uptime_ms: z.number().int().min(0) }).strict(),
  readiness: z.object({ ready: z.boolean().describe('Every (named) service is ready.'), services: z.array(ServiceReport) }).strict(),
  'service-status': z
    .object({
      services: z.array(
        ServiceReport.extend({
          program: z.string(),
          ports: z.array(z.object({ name: LocalName, port: z.number().int(), protocol: z.enum(['tcp', 'udp']) }).strict()),
        }).strict(),
      ),
      depends_on: z.array(DependencyEndpoint).describe('Where this guest finds the instances it depends on (from the config drive).'),
    })
    .strict(),
  drain: z
    .object({
      drained: z.boolean().describe('In-flight work finished before the deadline.'),
      in_flight: z.number().int().min(0).describe('Work items still running when the answer was sent.'),
      waited_ms: z.number().int().min(0),
    })
    .strict(),
  'post-restore': z
    .object({
      secrets_epoch: SecretsEpoch,
      previous_secrets_epoch: SecretsEpoch.nullable(),
      config_version: ConfigVersion.nullable(),
      secrets: z.array(SecretName).describe('Names (never values) of the files on the secrets drive.'),
      reseeded: z.literal(true),
      restores: z.number().int().min(1).describe('post-restore calls since the agent started.'),
      ready: z.boolean(),
    })
    .strict(),
  'config-reload': z
    .object({
      config_version: ConfigVersion.describe('The version now on the config drive.'),
      previous_config_version: ConfigVersion.nullable(),
      applied: z.boolean().describe('The config drive now carries the requested version.'),
      config_changed: z
        .array(LocalName)
        .optional()
        .describe('Services whose generated config file (services[].config) changed and were restarted where the agent supervises them; the others kept running. Absent from agents older than this field.'),
    })
    .strict(),
  'secrets-reload': z
    .object({
      secrets_epoch: SecretsEpoch,
      previous_secrets_epoch: SecretsEpoch.nullable(),
      secrets: z.array(SecretName),
      added: z.array(SecretName),
      changed: z.array(SecretName),
      removed: z.array(SecretName),
    })
    .strict(),
  'connector-status': z.object({ connectors: z.array(ConnectorReport) }).strict(),
  'job-status': z
    .object({
      job_id: z.string().max(128).nullable(),
      state: JobState,
      progress: z.number().min(0).max(1).nullable(),
      message: Message.nullable(),
    })
    .strict(),
  'openclaw-setup-code': z
    .object({
      setup_code: z.string().min(1).max(4096).describe('A single-use OpenClaw node setup code (a credential: it goes only onto a worker secrets drive of the same tenant).'),
      expires_at_ms: z.number().int().min(0),
      gateway_url: z.string().max(256).describe('The endpoint the code names (the gateway tenant address and port).'),
    })
    .strict(),
} as const satisfies Record<Verb, z.ZodType>;

export type VerbArgs<V extends Verb> = z.infer<(typeof VerbArgs)[V]>;
export type VerbArgsInput<V extends Verb> = z.input<(typeof VerbArgs)[V]>;
export type VerbResult<V extends Verb> = z.infer<(typeof VerbResults)[V]>;

// ---------------------------------------------------------------------------------------------
// Requests, responses, errors

function requestSchema<V extends Verb>(verb: V) {
  return z.object({ type: z.literal('request'), id: RequestId, verb: z.literal(verb), args: VerbArgs[verb] }).strict();
}

/** A request, fully typed per verb (for docs and for the host's own checks). */
export const Request = z
  .discriminatedUnion('verb', [
    requestSchema('ping'),
    requestSchema('readiness'),
    requestSchema('service-status'),
    requestSchema('drain'),
    requestSchema('post-restore'),
    requestSchema('config-reload'),
    requestSchema('secrets-reload'),
    requestSchema('connector-status'),
    requestSchema('job-status'),
    requestSchema('openclaw-setup-code'),
  ])
  .meta({ id: 'VsockRequest' });
export type Request = z.infer<typeof Request>;

/**
 * The envelope a guest checks first. A request that fits it but names a verb the role does not
 * enable is `unsupported`; args that do not fit the verb are `bad-args`. Neither closes the
 * connection. A frame that does not fit the envelope is `bad-frame` (fatal).
 */
export const RequestEnvelope = z
  .object({ type: z.literal('request'), id: RequestId, verb: z.string().min(1).max(64), args: z.unknown() })
  .strict();

export const Response = z
  .discriminatedUnion('ok', [
    z.object({ type: z.literal('response'), id: RequestId, ok: z.literal(true), result: z.unknown() }).strict(),
    z.object({ type: z.literal('response'), id: RequestId, ok: z.literal(false), error: WireError }).strict(),
  ])
  .meta({ id: 'VsockResponse' });
export type Response = z.infer<typeof Response>;

/** A fatal error: the sender closes the connection after it. `id` names the request that caused it, if any. */
export const ErrorFrame = z
  .object({ type: z.literal('error'), id: RequestId.nullable(), error: WireError })
  .strict()
  .meta({ id: 'VsockError' });
export type ErrorFrame = z.infer<typeof ErrorFrame>;

/** Only `type`, to route a message before judging it. */
export const Envelope = z.looseObject({ type: z.string() });

/** Which message types each side may send. */
export const GUEST_SENDS = ['hello', 'response', 'error'] as const;
export const HOST_SENDS = ['hello-ack', 'request', 'error'] as const;

export function errorFrame(code: WireErrorCode, message: string, id: number | null = null): ErrorFrame {
  return { type: 'error', id, error: { code, message: truncate(message) } };
}

export function errorResponse(id: number, code: WireErrorCode, message: string): Response {
  return { type: 'response', id, ok: false, error: { code, message: truncate(message) } };
}

export function truncate(message: string, max = 2048): string {
  return message.length <= max ? message : `${message.slice(0, max - 1)}…`;
}

/** A zod error as one line, for error messages. */
export function describeZodError(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.length ? issue.path.join('.') : '(root)'}: ${issue.message}`).join('; ');
}

// ---------------------------------------------------------------------------------------------
// Docs

/** JSON Schema (draft 2020-12) of every message and of each verb's args and result. */
export function protocolJsonSchema(): Record<string, unknown> {
  const schema = (s: z.ZodType) => z.toJSONSchema(s, { target: 'draft-2020-12', io: 'output' }) as Record<string, unknown>;
  const perVerb = (map: Record<Verb, z.ZodType>) => Object.fromEntries(VERBS.map((verb: Verb) => [verb, schema(map[verb])]));
  return {
    protocol_version: PROTOCOL_VERSION,
    max_frame_bytes: MAX_FRAME_BYTES,
    framing: '4-byte big-endian length, then that many bytes of UTF-8 JSON',
    messages: {
      hello: schema(Hello),
      'hello-ack': schema(HelloAck),
      request: schema(Request),
      response: schema(Response),
      error: schema(ErrorFrame),
    },
    args: perVerb(VerbArgs),
    results: perVerb(VerbResults),
    errors: Object.fromEntries(WIRE_ERROR_CODES.map((code) => [code, { fatal: FATAL_ERROR_CODES.has(code), meaning: WIRE_ERROR_MEANINGS[code] }])),
  };
}
