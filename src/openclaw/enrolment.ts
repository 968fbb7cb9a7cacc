import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Clock } from '../common/clock.ts';
import type { DeviceIdentity } from './device-identity.ts';
import { connectGateway, type GatewayConnection } from './gateway-client.ts';
import { gatewayUrls } from './gateway-handshake.ts';

/**
 * Workers join their tenant's gateway without a human. The control plane, as an operator of
 * that gateway (shared token plus its own device identity), asks the gateway to mint a
 * single-use node setup code (`device.pair.setupCode` with bootstrapProfile "node", the RPC
 * behind `openclaw devices join-code`). The worker's node host runs once with
 * `--pair-if-needed <code>`: the code approves both its device and its command surface, and
 * the device token it gets is stored in its state dir on /data, so later starts (after sleep,
 * wake or restart) reconnect with that token and ignore the spent code.
 *
 * The setup code, not the join URL, is what plaintext tenant networks need: OpenClaw mints join
 * URLs only for TLS or loopback endpoints.
 */

/** Scopes the control plane needs as an operator: minting codes needs operator.admin. */
export const ENROLMENT_SCOPES = ['operator.read', 'operator.write', 'operator.admin', 'operator.pairing'] as const;

export interface OperatorTarget {
  host: string;
  port: number;
  token: string;
  identity: DeviceIdentity;
}

export const SetupCode = z
  .object({
    setupId: z.string(),
    setupCode: z.string().min(1),
    expiresAtMs: z.number(),
    gatewayUrl: z.string(),
  })
  .loose();
export type SetupCode = z.infer<typeof SetupCode>;

export const NodeEntry = z
  .object({
    nodeId: z.string(),
    displayName: z.string().optional(),
    commands: z.array(z.string()).optional(),
    paired: z.boolean().optional(),
    connected: z.boolean().optional(),
    approvalState: z.string().optional(),
  })
  .loose();
export type NodeEntry = z.infer<typeof NodeEntry>;

const NodeList = z.object({ nodes: z.array(NodeEntry) }).loose();

const InvokeResult = z.object({ ok: z.boolean(), nodeId: z.string(), command: z.string(), payload: z.unknown().optional() }).loose();
export type InvokeResult = z.infer<typeof InvokeResult>;

/** An operator connection to a tenant gateway, for the calls below. Close it when done. */
export function connectOperator(target: OperatorTarget, clock: Clock, deadline: number): Promise<GatewayConnection> {
  return connectGateway({ url: gatewayUrls(target).ws, clock, deadline, token: target.token, role: 'operator', scopes: ENROLMENT_SCOPES, identity: target.identity, displayName: 'mvm-actors control plane' });
}

/** Mints a single-use node setup code (valid about 10 minutes) naming the gateway's configured public URL. */
export async function mintNodeSetupCode(operator: GatewayConnection, clock: Clock, deadline: number): Promise<SetupCode> {
  const payload = await operator.request('device.pair.setupCode', { bootstrapProfile: 'node', includeQr: false }, deadline);
  return SetupCode.parse(payload);
}

export async function listNodes(operator: GatewayConnection, clock: Clock, deadline: number): Promise<NodeEntry[]> {
  return NodeList.parse(await operator.request('node.list', {}, deadline)).nodes;
}

/** Invokes a node command through the gateway (e.g. system.which) and returns the node's answer. */
export async function invokeNode(operator: GatewayConnection, request: { nodeId: string; command: string; params: unknown; timeoutMs: number }, clock: Clock, deadline: number): Promise<InvokeResult> {
  const payload = await operator.request('node.invoke', { nodeId: request.nodeId, command: request.command, params: request.params, idempotencyKey: randomUUID(), timeoutMs: request.timeoutMs }, deadline);
  return InvokeResult.parse(payload);
}

/**
 * The node host's command line (after `<node> <openclaw.mjs>`). The setup code comes from the
 * worker's secrets drive; once the node holds a device token, OpenClaw ignores it.
 */
export function nodeHostArgs(options: { gatewayHost: string; gatewayPort: number; displayName: string; setupCode: string | null }): string[] {
  return [
    'node',
    'run',
    '--host',
    options.gatewayHost,
    '--port',
    String(options.gatewayPort),
    '--display-name',
    options.displayName,
    ...(options.setupCode !== null ? ['--pair-if-needed', options.setupCode] : []),
  ];
}

/** The gateway's command line: every setting (bind, port, auth) comes from the generated config. */
export function gatewayArgs(): string[] {
  return ['gateway', 'run'];
}
