import type { WireErrorCode } from '../vsock/protocol.ts';

/** A handler's refusal: becomes a typed error response (non-fatal codes) or error and close (fatal codes). */
export class AgentError extends Error {
  constructor(
    readonly code: WireErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'AgentError';
  }
}
