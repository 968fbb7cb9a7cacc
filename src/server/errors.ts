import { z } from 'zod';

/**
 * The one error envelope every route answers with, and the registry of its codes. A client
 * reads `code` (stable) and `issues` (one per validation problem, with its JSON path); `message`
 * is for people.
 */
export const ErrorEnvelope = z
  .object({
    statusCode: z.number().int(),
    code: z.string(),
    message: z.string(),
    issues: z.array(z.object({ path: z.string(), message: z.string(), code: z.string().optional(), hint: z.string().optional() })).optional(),
    reason: z.string().optional().describe('Machine-readable reason of a refusal (409).'),
  })
  .meta({ id: 'Error' });
export type ErrorEnvelope = z.infer<typeof ErrorEnvelope>;

export const ERROR_CODES = {
  MVM_ERR_VALIDATION: { status: 400, meaning: 'The request or document is invalid; `issues` lists every problem with its path.' },
  MVM_ERR_UNAUTHORIZED: { status: 401, meaning: 'Missing or wrong bearer token.' },
  MVM_ERR_NOT_FOUND: { status: 404, meaning: 'No such role, tenant, instance or route.' },
  MVM_ERR_STALE_GENERATION: { status: 409, meaning: 'The desired state is older than the one applied.' },
  MVM_ERR_REFUSED: { status: 409, meaning: 'A rule refused the command; `reason` says which (sleep floor, quota, ...).' },
  MVM_ERR_BODY_TOO_LARGE: { status: 413, meaning: 'The request body exceeds the limit.' },
  MVM_ERR_INTERNAL: { status: 500, meaning: 'An unexpected error; the server log has the details.' },
} as const;
export type ErrorCode = keyof typeof ERROR_CODES;

export class ApiError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly extra: Partial<Pick<ErrorEnvelope, 'issues' | 'reason'>> = {},
  ) {
    super(message);
  }
  get statusCode(): number {
    return ERROR_CODES[this.code].status;
  }
}

export function envelope(code: ErrorCode, message: string, extra: Partial<Pick<ErrorEnvelope, 'issues' | 'reason'>> = {}): ErrorEnvelope {
  return { statusCode: ERROR_CODES[code].status, code, message, ...extra };
}
