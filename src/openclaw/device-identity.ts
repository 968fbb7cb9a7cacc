import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';

/**
 * An OpenClaw device identity: an Ed25519 key pair whose public key, hashed, is the device id.
 * The gateway pairs devices, not connections, so a client that keeps its identity in a file
 * is recognised again (and gets its device token back) instead of piling up pairing records.
 */

const IdentityFile = z
  .object({
    version: z.literal(1),
    device_id: z.string().regex(/^[0-9a-f]{64}$/),
    public_key: z.string().min(1).describe('Raw 32-byte Ed25519 public key, base64url.'),
    private_key_pem: z.string().startsWith('-----BEGIN PRIVATE KEY-----'),
    /** Device tokens the gateway issued to this identity, by gateway URL. */
    device_tokens: z.record(z.string(), z.string()),
  })
  .strict();
type IdentityFile = z.infer<typeof IdentityFile>;

export interface DeviceIdentity {
  readonly deviceId: string;
  readonly publicKey: string;
  readonly file: string | null;
  sign(payload: string): string;
  deviceToken(gatewayUrl: string): string | undefined;
  rememberDeviceToken(gatewayUrl: string, token: string): void;
}

function rawPublicKey(key: KeyObject): Buffer {
  // The SPKI DER of an Ed25519 key ends with the raw 32-byte key.
  return key.export({ type: 'spki', format: 'der' }).subarray(-32);
}

function fromKeys(privateKey: KeyObject, file: string | null, tokens: Record<string, string>): DeviceIdentity {
  const raw = rawPublicKey(createPublicKey(privateKey));
  const deviceId = createHash('sha256').update(raw).digest('hex');
  const publicKey = raw.toString('base64url');
  const save = () => {
    if (file === null) return;
    const data: IdentityFile = { version: 1, device_id: deviceId, public_key: publicKey, private_key_pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), device_tokens: tokens };
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    // Write then rename: a crash never leaves a half-written key behind.
    writeFileSync(`${file}.tmp`, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  };
  save();
  return {
    deviceId,
    publicKey,
    file,
    sign: (payload) => sign(null, Buffer.from(payload, 'utf8'), privateKey).toString('base64url'),
    deviceToken: (url) => tokens[url],
    rememberDeviceToken: (url, token) => {
      if (tokens[url] === token) return;
      tokens[url] = token;
      save();
    },
  };
}

/** A throwaway identity (nothing persisted). */
export function ephemeralDeviceIdentity(): DeviceIdentity {
  return fromKeys(generateKeyPairSync('ed25519').privateKey, null, {});
}

/** Loads the identity kept in `file`, creating it (mode 0600) on first use. */
export function loadDeviceIdentity(file: string): DeviceIdentity {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    return fromKeys(generateKeyPairSync('ed25519').privateKey, file, {});
  }
  const parsed = IdentityFile.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`device identity file ${file} is not valid (${parsed.error.issues[0]?.message ?? 'unknown'}); remove it to create a new identity (the gateway will see a new device)`);
  const identity = fromKeys(createPrivateKey(parsed.data.private_key_pem), file, { ...parsed.data.device_tokens });
  if (identity.deviceId !== parsed.data.device_id) throw new Error(`device identity file ${file}: device_id does not match its key; remove the file to create a new identity`);
  return identity;
}

/**
 * The string a device signs in `connect` (OpenClaw's v3 device-auth payload):
 * `v3|deviceId|clientId|clientMode|role|scopes|signedAt|token|nonce|platform|deviceFamily`.
 */
export function deviceAuthPayload(fields: { deviceId: string; clientId: string; clientMode: string; role: string; scopes: readonly string[]; signedAt: number; token: string; nonce: string; platform: string; deviceFamily: string }): string {
  return ['v3', fields.deviceId, fields.clientId, fields.clientMode, fields.role, fields.scopes.join(','), String(fields.signedAt), fields.token, fields.nonce, fields.platform.toLowerCase(), fields.deviceFamily.toLowerCase()].join('|');
}
