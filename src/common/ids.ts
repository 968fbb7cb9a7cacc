import { randomBytes } from 'node:crypto';

/** Source of unique ids (snapshot ids, request ids). Injected so tests get predictable ids. */
export interface IdSource {
  next(prefix: string): string;
}

export const randomIds: IdSource = {
  next: (prefix) => `${prefix}-${randomBytes(6).toString('hex')}`,
};

/** `prefix-1`, `prefix-2`, ... per prefix: deterministic ids for tests and simulations. */
export function sequentialIds(): IdSource {
  const counters = new Map<string, number>();
  return {
    next(prefix) {
      const n = (counters.get(prefix) ?? 0) + 1;
      counters.set(prefix, n);
      return `${prefix}-${n}`;
    },
  };
}
