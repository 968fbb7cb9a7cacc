import { DriverError, type DriverOp } from '../driver/vmm-driver.ts';

/**
 * A failure talking to an OpenClaw Gateway. `code` is the top-level error code (OpenClaw's, such
 * as INVALID_REQUEST, NOT_PAIRED, UNAVAILABLE; or ours: TIMEOUT, UNREACHABLE, CLOSED, NOT_READY,
 * PROTOCOL). `detailsCode` is OpenClaw's `error.details.code` (AUTH_TOKEN_MISMATCH,
 * AUTH_TOKEN_MISSING, AUTH_DEVICE_TOKEN_MISMATCH, PAIRING_REQUIRED, PROTOCOL_MISMATCH...): branch on
 * it, never on message text (auth failures all share INVALID_REQUEST at the top).
 */
export class OpenClawGatewayError extends Error {
  override readonly name = 'OpenClawGatewayError';
  constructor(
    readonly code: string,
    readonly detailsCode: string | null,
    message: string,
    /** Whether the same attempt may succeed later (gateway still starting, not reachable yet). */
    readonly retryable: boolean,
    readonly details: Record<string, unknown> = {},
  ) {
    super(detailsCode ? `${message} [${code}/${detailsCode}]` : `${message} [${code}]`);
  }

  static fromShape(shape: { code: string; message: string; details?: Record<string, unknown> | undefined; retryable?: boolean | undefined } | undefined, fallback: string): OpenClawGatewayError {
    if (shape === undefined) return new OpenClawGatewayError('PROTOCOL', null, `${fallback} without an error body`, false);
    const detailsCode = typeof shape.details?.code === 'string' ? shape.details.code : null;
    // UNAVAILABLE (e.g. details.reason "startup-sidecars") means "starting, retry shortly".
    const retryable = shape.retryable === true || shape.code === 'UNAVAILABLE';
    return new OpenClawGatewayError(shape.code, detailsCode, `${fallback}: ${shape.message}`, retryable, shape.details ?? {});
  }

  /** The same failure as the VMM driver port reports it: `not-ready` while retryable, else `openclaw:<code>`. */
  toDriverError(op: DriverOp, instanceId: string): DriverError {
    const code = this.retryable ? 'not-ready' : `openclaw:${this.detailsCode ?? this.code}`;
    return new DriverError(op, instanceId, code, this.message, this.retryable);
  }
}
