/**
 * Compares two `nft -j list table` outputs. Both sides come from nft itself (the expected side
 * is the generated ruleset loaded into a throwaway network namespace), so they share nft's own
 * canonical form; normalizing only drops what differs between two loads of the same text
 * (handles, metainfo) and sorts set elements, which the kernel keeps in no promised order.
 */

export interface NftDifference {
  /** `table`, `chain <name>`, `set <name>`, `map <name>`. */
  where: string;
  kind: 'missing' | 'unexpected' | 'changed' | 'order';
  detail: string;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Obj = { [key: string]: Json };

interface Normalized {
  table: Obj | null;
  chains: Map<string, Obj>;
  sets: Map<string, { kind: 'set' | 'map'; header: Obj; elements: string[] }>;
  rules: Map<string, string[]>;
}

const stable = (value: Json): string => JSON.stringify(sortKeys(value));

function sortKeys(value: Json): Json {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k]!)]));
  return value;
}

function without(obj: Obj, keys: string[]): Obj {
  return Object.fromEntries(Object.entries(obj).filter(([k]) => !keys.includes(k)));
}

/** Parses `nft -j list table ...` output; throws with the reason when it is not nft JSON. */
export function normalizeNftJson(text: string): Normalized {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`nft -j output is not JSON: ${(error as Error).message}`, { cause: error });
  }
  const items = (parsed as { nftables?: unknown }).nftables;
  if (!Array.isArray(items)) throw new Error('nft -j output has no "nftables" array');
  const out: Normalized = { table: null, chains: new Map(), sets: new Map(), rules: new Map() };
  for (const item of items as Obj[]) {
    const [kind, body] = Object.entries(item)[0] as [string, Obj];
    if (kind === 'table') out.table = without(body, ['handle']);
    else if (kind === 'chain') {
      out.chains.set(String(body.name), without(body, ['handle']));
      if (!out.rules.has(String(body.name))) out.rules.set(String(body.name), []);
    } else if (kind === 'set' || kind === 'map') {
      const elem = Array.isArray(body.elem) ? body.elem.map((e) => stable(e)).sort() : [];
      out.sets.set(String(body.name), { kind, header: without(body, ['handle', 'elem']), elements: elem });
    } else if (kind === 'rule') {
      const chain = String(body.chain);
      const list = out.rules.get(chain) ?? [];
      list.push(stable(without(body, ['handle', 'index'])));
      out.rules.set(chain, list);
    }
  }
  return out;
}

function describeRule(rule: string): string {
  const parsed = JSON.parse(rule) as Obj;
  const comment = typeof parsed.comment === 'string' ? ` "${parsed.comment}"` : '';
  const expr = JSON.stringify(parsed.expr);
  return `${comment ? `${comment.trim()} ` : ''}${expr.length > 300 ? `${expr.slice(0, 300)}…` : expr}`;
}

function multisetMinus(a: string[], b: string[]): string[] {
  const counts = new Map<string, number>();
  for (const x of b) counts.set(x, (counts.get(x) ?? 0) + 1);
  const out: string[] = [];
  for (const x of a) {
    const n = counts.get(x) ?? 0;
    if (n > 0) counts.set(x, n - 1);
    else out.push(x);
  }
  return out;
}

/** Every difference between the expected and the live table, in a stable order. */
export function diffNft(expected: Normalized, live: Normalized | null): NftDifference[] {
  if (!live || !live.table) return [{ where: 'table', kind: 'missing', detail: 'the table is not loaded; run `mvm-actors net apply`' }];
  const diffs: NftDifference[] = [];
  if (expected.table && stable(expected.table) !== stable(live.table)) diffs.push({ where: 'table', kind: 'changed', detail: `expected ${stable(expected.table)}, found ${stable(live.table)}` });
  const names = (a: Iterable<string>, b: Iterable<string>) => [...new Set([...a, ...b])].sort();
  for (const name of names(expected.sets.keys(), live.sets.keys())) {
    const e = expected.sets.get(name);
    const l = live.sets.get(name);
    const where = `${(e ?? l)!.kind} ${name}`;
    if (!l) diffs.push({ where, kind: 'missing', detail: `not in the live table (${e!.elements.length} elements expected)` });
    else if (!e) diffs.push({ where, kind: 'unexpected', detail: `not in the generated ruleset (${l.elements.length} elements)` });
    else {
      if (stable(e.header) !== stable(l.header)) diffs.push({ where, kind: 'changed', detail: `definition: expected ${stable(e.header)}, found ${stable(l.header)}` });
      for (const x of multisetMinus(e.elements, l.elements)) diffs.push({ where, kind: 'missing', detail: `element ${x}` });
      for (const x of multisetMinus(l.elements, e.elements)) diffs.push({ where, kind: 'unexpected', detail: `element ${x}` });
    }
  }
  for (const name of names(expected.chains.keys(), live.chains.keys())) {
    const e = expected.chains.get(name);
    const l = live.chains.get(name);
    const where = `chain ${name}`;
    if (!l) {
      diffs.push({ where, kind: 'missing', detail: 'not in the live table' });
      continue;
    }
    if (!e) {
      diffs.push({ where, kind: 'unexpected', detail: 'not in the generated ruleset' });
      continue;
    }
    if (stable(e) !== stable(l)) diffs.push({ where, kind: 'changed', detail: `definition: expected ${stable(e)}, found ${stable(l)}` });
    const er = expected.rules.get(name) ?? [];
    const lr = live.rules.get(name) ?? [];
    const missing = multisetMinus(er, lr);
    const extra = multisetMinus(lr, er);
    for (const r of missing) diffs.push({ where, kind: 'missing', detail: `rule ${describeRule(r)}` });
    for (const r of extra) diffs.push({ where, kind: 'unexpected', detail: `rule ${describeRule(r)}` });
    if (missing.length === 0 && extra.length === 0 && er.join('\n') !== lr.join('\n')) diffs.push({ where, kind: 'order', detail: 'the same rules in another order' });
  }
  return diffs;
}
