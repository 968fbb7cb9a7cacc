import { existsSync, readFileSync } from 'node:fs';
import { chmod, writeFile } from 'node:fs/promises';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, EXAMPLE_DESIRED_STATE, REPO_ROOT, aDesiredState, tempDir } from '../helpers/fixtures.ts';

/**
 * The client commands against a REAL `mvm-actors serve` process on a loopback port, each
 * invocation the real executable finding the server through `--data-dir` (server.json) and its
 * token (api-token), as a platform engineer on the host would.
 */

// Nothing from the caller's environment may point the CLI elsewhere.
const ENV = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('MVM_ACTORS_')));

const started: ResultPromise[] = [];
afterEach(async () => {
  for (const child of started.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await child.catch(() => undefined);
  }
});

function mvm(args: string[], options: { input?: string; env?: Record<string, string> } = {}) {
  return execa('node', [CLI, ...args], { reject: false, cwd: REPO_ROOT, env: { ...ENV, ...options.env }, extendEnv: false, ...(options.input !== undefined ? { input: options.input } : { stdin: 'ignore' }) });
}

/** Starts a long-running CLI process (serve, events --follow) that afterEach kills if the test did not. */
function spawnCli(args: string[]) {
  const child = execa('node', [CLI, ...args], { reject: false, cwd: REPO_ROOT, env: ENV, extendEnv: false, stdin: 'ignore', buffer: false });
  started.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  return { child, stdout: () => stdout, stderr: () => stderr };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** `mvm-actors serve` on 127.0.0.1:0 in dataDir; resolves once it wrote server.json. */
async function serve(dataDir: string) {
  const proc = spawnCli(['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--log-level', 'warn']);
  const serverFile = path.join(dataDir, 'server.json');
  const info = await waitFor(`serve to write ${serverFile} (stderr: ${proc.stderr()})`, () => {
    if (proc.child.exitCode !== null) throw new Error(`serve exited ${proc.child.exitCode}: ${proc.stderr()}`);
    if (!existsSync(serverFile)) return undefined;
    const parsed = JSON.parse(readFileSync(serverFile, 'utf8')) as { url: string; pid: number };
    return parsed.pid === proc.child.pid ? parsed : undefined;
  });
  expect(info.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  return { ...proc, url: info.url };
}

interface InstanceJson {
  instance_id: string;
  tenant_id: string;
  status: string;
  status_reason: string | null;
}

const SETTLED = new Set(['running', 'refused', 'stopped', 'sleeping', 'warm']);

async function instancesJson(dataDir: string, ...filters: string[]): Promise<InstanceJson[]> {
  const { stdout, stderr, exitCode } = await mvm(['instances', '--json', '--data-dir', dataDir, ...filters]);
  expect(exitCode, stderr).toBe(0);
  return (JSON.parse(stdout) as { instances: InstanceJson[] }).instances;
}

/** Waits until the example's nine instances have left their transient states. */
async function settled(dataDir: string): Promise<InstanceJson[]> {
  return waitFor('the instances to settle', async () => {
    const list = await instancesJson(dataDir);
    return list.length === 9 && list.every((i) => SETTLED.has(i.status)) ? list : undefined;
  });
}

/** The fake hypervisor's VMs as the data dir records them: what survives a restart of serve. */
function hypervisor(dataDir: string): Record<string, { state: string; bootCount: number }> {
  return JSON.parse(readFileSync(path.join(dataDir, 'fake-hypervisor.json'), 'utf8'));
}

async function closedPort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function writeDoc(dir: string, name: string, doc: unknown): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, JSON.stringify(doc, null, 2));
  return file;
}

describe('client commands against a real serve', () => {
  it('plan, apply, status and instances: tables for people, the API JSON with --json', async () => {
    const dir = await tempDir();
    const server = await serve(dir);

    const empty = await mvm(['status', '--data-dir', dir]);
    expect(empty.exitCode, empty.stderr).toBe(0);
    expect(empty.stdout).toContain(`server      ${server.url} (ok)`);
    expect(empty.stdout).toMatch(/^generation {2}none applied yet/m);

    const plan = await mvm(['plan', EXAMPLE_DESIRED_STATE, '--data-dir', dir]);
    expect(plan.exitCode, plan.stderr).toBe(0);
    const planLines = plan.stdout.split('\n');
    expect(planLines[0]).toBe('generation 7: 9 steps');
    expect(planLines[1]).toMatch(/^OP {6}INSTANCE {11}ROLE {17}FROM → TARGET$/);
    expect(planLines[2]).toMatch(/^create {2}acme-builds-0 {6}builder {14}- → running$/);
    expect(planLines.filter((l) => l.startsWith('create '))).toHaveLength(9);
    expect(plan.stdout).toMatch(/^create {2}acme-workers-3 +worker +- → sleeping$/m);
    // Every row's ROLE column starts where the header's does.
    const roleColumn = planLines[1]!.indexOf('ROLE');
    for (const line of planLines.slice(2)) expect(line.slice(roleColumn - 2, roleColumn)).toBe('  ');
    const planJson = await mvm(['plan', '-', '--json', '--data-dir', dir], { input: readFileSync(EXAMPLE_DESIRED_STATE, 'utf8') });
    expect(planJson.exitCode, planJson.stderr).toBe(0);
    expect(JSON.parse(planJson.stdout)).toMatchObject({ generation: 7, issues: [], steps: expect.arrayContaining([{ op: 'create', tenant_id: 'acme', pool_id: 'gateway', instance_id: 'acme-gateway-0', role: 'gateway', from: null, target: 'running' }]) });
    expect(await instancesJson(dir)).toEqual([]); // plan applied nothing

    const apply = await mvm(['apply', EXAMPLE_DESIRED_STATE, '--data-dir', dir]);
    expect(apply.exitCode, apply.stderr).toBe(0);
    expect(apply.stdout).toBe(`applied generation 7 to ${server.url}: 9 steps`);
    const list = await settled(dir);
    expect(list.filter((i) => i.status === 'running')).toHaveLength(8);

    const status = await mvm(['status', '--data-dir', dir]);
    expect(status.exitCode, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^generation {2}7$/m);
    expect(status.stdout).toMatch(/^tenants {5}2$/m);
    expect(status.stdout).toMatch(/^instances {3}9$/m);
    expect(status.stdout).toMatch(/^ {2}running {2}8$/m);
    expect(status.stdout).toMatch(/^ {2}refused {2}1$/m);
    const statusJson = JSON.parse((await mvm(['status', '--json', '--data-dir', dir])).stdout);
    expect(statusJson).toEqual({ server: server.url, health: { status: 'ok', generation: 7 }, instances: { total: 9, by_status: { refused: 1, running: 8 } }, tenants: { total: 2, ids: ['acme', 'globex'] } });

    const acme = await mvm(['instances', '--tenant', 'acme', '--data-dir', dir]);
    expect(acme.exitCode, acme.stderr).toBe(0);
    const rows = acme.stdout.split('\n');
    expect(rows[0]).toMatch(/^ID {14}TENANT {2}ROLE {5}STATUS {3}REASON {2}IP$/);
    expect(rows.slice(1)).toHaveLength(7);
    expect(rows).toContain('acme-gateway-0  acme    gateway  running  -       10.101.0.2');
    expect(acme.stdout).not.toContain('globex');
    const refused = await mvm(['instances', '--tenant', 'globex', '--state', 'refused', '--data-dir', dir]);
    expect(refused.stdout).toMatch(/^globex-imessage-0 +globex +capability-imessage +refused +missing-drive:secrets:missing-secret:imessage-credentials +10\.102\.0\.3$/m);
    expect((await mvm(['instances', '--role', 'worker', '--pool', 'workers', '--data-dir', dir])).stdout.split('\n')).toHaveLength(6);
    expect((await mvm(['instances', '--tenant', 'nobody', '--data-dir', dir])).stdout).toBe('no instances match --tenant nobody');
  });

  it('apply: bad JSON exits 2 with line and column; an invalid document exits 1 with every path; a stale generation exits 1', async () => {
    const dir = await tempDir();
    await serve(dir);
    const bad = path.join(dir, 'bad.json');
    await writeFile(bad, '{\n  "schema_version": 1,\n  "tenants": [,]\n}\n');
    const syntax = await mvm(['apply', bad, '--data-dir', dir]);
    expect(syntax.exitCode).toBe(2);
    expect(syntax.stderr).toBe(`mvm-actors: ${bad} is not valid JSON at line 3, column 15: value expected`);

    const doc = aDesiredState();
    doc.schema_version = 2;
    doc.tenants[0].tenant_id = 'Acme';
    const invalid = await mvm(['apply', await writeDoc(dir, 'invalid.json', doc), '--data-dir', dir]);
    expect(invalid.exitCode).toBe(1);
    expect(invalid.stdout).toBe('');
    expect(invalid.stderr).toContain('mvm-actors: the desired state is invalid: 2 problem(s)');
    expect(invalid.stderr).toMatch(/^ {2}✖ schema_version: /m);
    expect(invalid.stderr).toMatch(/^ {2}✖ tenants\[0\]\.tenant_id: /m);
    const invalidJson = await mvm(['apply', path.join(dir, 'invalid.json'), '--json', '--data-dir', dir]);
    expect(invalidJson.exitCode).toBe(1);
    const envelope = JSON.parse(invalidJson.stdout);
    expect(envelope).toMatchObject({ statusCode: 400, code: 'MVM_ERR_VALIDATION' });
    expect(envelope.issues.map((i: { path: string }) => i.path)).toEqual(['schema_version', 'tenants[0].tenant_id']);
    expect(await instancesJson(dir)).toEqual([]);

    expect((await mvm(['apply', EXAMPLE_DESIRED_STATE, '--data-dir', dir])).exitCode).toBe(0);
    const older = aDesiredState();
    older.generation = 3;
    const stale = await mvm(['apply', await writeDoc(dir, 'older.json', older), '--data-dir', dir]);
    expect(stale.exitCode).toBe(1);
    expect(stale.stderr).toContain('mvm-actors: generation is older than the applied generation 7');
    expect(stale.stderr).toContain('reason: stale-generation:3<7');

    // Part of a document applies; the rest is listed and the exit code says so.
    const partial = aDesiredState();
    partial.generation = 8;
    partial.tenants[0].pools[2].role = 'gatway';
    const some = await mvm(['apply', await writeDoc(dir, 'partial.json', partial), '--data-dir', dir]);
    expect(some.exitCode).toBe(1);
    expect(some.stdout).toMatch(/^applied generation 8 to http:\/\/127\.0\.0\.1:\d+: \d+ steps?$/);
    expect(some.stderr).toContain('✖ tenants[0].pools[2].role: unknown role "gatway"');
    expect(some.stderr).toContain('rejected pools: tenants[0].pools[2]');
  });

  it('sleep, wake, stop, start: "accepted", or exit 1 with the reason a rule refused', async () => {
    const dir = await tempDir();
    await serve(dir);
    expect((await mvm(['apply', EXAMPLE_DESIRED_STATE, '--data-dir', dir])).exitCode).toBe(0);
    await settled(dir);

    const floor = await mvm(['sleep', 'acme-gateway-0', '--data-dir', dir]);
    expect(floor.exitCode).toBe(1);
    expect(floor.stdout).toBe('');
    expect(floor.stderr).toBe('mvm-actors: sleep of acme-gateway-0 refused: sleep-floor:gateway:1\nreason: sleep-floor:gateway:1');
    const floorJson = await mvm(['sleep', 'acme-gateway-0', '--json', '--data-dir', dir]);
    expect(floorJson.exitCode).toBe(1);
    expect(JSON.parse(floorJson.stdout)).toMatchObject({ statusCode: 409, code: 'MVM_ERR_REFUSED', reason: 'sleep-floor:gateway:1' });

    const stop = await mvm(['stop', 'acme-workers-1', '--data-dir', dir]);
    expect(stop.exitCode, stop.stderr).toBe(0);
    expect(stop.stdout).toBe('accepted: stop acme-workers-1');
    await waitFor('acme-workers-1 to stop', async () => (await instancesJson(dir, '--state', 'stopped')).some((i) => i.instance_id === 'acme-workers-1'));
    const start = await mvm(['start', 'acme-workers-1', '--json', '--data-dir', dir]);
    expect(start.exitCode, start.stderr).toBe(0);
    expect(JSON.parse(start.stdout)).toMatchObject({ accepted: true, instance_id: 'acme-workers-1', command: 'start' });

    const unknown = await mvm(['wake', 'nope-0', '--data-dir', dir]);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toBe('mvm-actors: unknown instance "nope-0"');
    const badId = await mvm(['wake', 'Bad..Id', '--data-dir', dir]);
    expect(badId.exitCode).toBe(1);
    expect(badId.stderr).toMatch(/^ {2}✖ params\.id: /m);
    expect((await mvm(['sleep', '--data-dir', dir])).stderr).toContain('sleep: name the instance');
  });

  it('secret set reads standard input or --from-file, never an argument, and no command prints the value', async () => {
    const dir = await tempDir();
    await serve(dir);
    const VALUE = 'tg-very-secret-0123456789';
    const outputs: string[] = [];
    const run = async (args: string[], input?: string) => {
      const result = await mvm([...args, '--data-dir', dir], input === undefined ? {} : { input });
      outputs.push(result.stdout, result.stderr);
      return result;
    };

    const set = await run(['secret', 'set', 'acme', 'telegram-bot-token'], `${VALUE}\n`);
    expect(set.exitCode, set.stderr).toBe(0);
    expect(set.stdout).toMatch(/^secret telegram-bot-token of acme set; secrets_epoch \d+$/);

    const fromFile = path.join(dir, 'value.txt');
    await writeFile(fromFile, 'another-secret-value\n', { mode: 0o600 });
    const setFile = await run(['secret', 'set', 'acme', 'whatsapp-token', '--from-file', fromFile, '--json']);
    expect(setFile.exitCode, setFile.stderr).toBe(0);
    expect(JSON.parse(setFile.stdout)).toMatchObject({ tenant_id: 'acme', name: 'whatsapp-token' });

    const list = await run(['secret', 'list', 'acme']);
    expect(list.exitCode, list.stderr).toBe(0);
    const rows = list.stdout.split('\n');
    expect(rows[0]).toMatch(/^NAME {16}EPOCH {2}STATE {4}UPDATED$/);
    expect(rows.slice(1).map((r) => r.split(/ +/)[0])).toEqual(['telegram-bot-token', 'whatsapp-token']);
    expect(rows[1]).toMatch(/^telegram-bot-token {2}\d+ +present {2}\d{4}-\d\d-\d\dT[\d:.]+Z$/);
    const listJson = await run(['secret', 'list', 'acme', '--json']);
    expect(JSON.parse(listJson.stdout).secrets.map((s: { name: string }) => s.name)).toEqual(['telegram-bot-token', 'whatsapp-token']);
    await run(['instances', '--json']);
    await run(['status', '--json']);

    const asArgument = await run(['secret', 'set', 'acme', 'telegram-bot-token', VALUE]);
    expect(asArgument.exitCode).toBe(2);
    expect(asArgument.stderr).toContain('never taken from an argument (arguments land in shell history');
    const emptyInput = await run(['secret', 'set', 'acme', 'empty'], '\n');
    expect(emptyInput.exitCode).toBe(2);
    expect(emptyInput.stderr).toContain('the value is empty (standard input)');

    const del = await run(['secret', 'delete', 'acme', 'whatsapp-token']);
    expect(del.exitCode, del.stderr).toBe(0);
    expect(del.stdout).toMatch(/^secret whatsapp-token of acme deleted; secrets_epoch \d+$/);
    const again = await run(['secret', 'delete', 'acme', 'whatsapp-token']);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toBe('mvm-actors: tenant "acme" has no secret "whatsapp-token"');

    for (const text of outputs) {
      expect(text).not.toContain(VALUE);
      expect(text).not.toContain('another-secret-value');
    }
  });

  it('events replays and exits; events --follow streams live entries; a restarted serve restores the same VMs, still running, without booting them again', async () => {
    const dir = await tempDir();
    let server = await serve(dir);
    expect((await mvm(['apply', EXAMPLE_DESIRED_STATE, '--data-dir', dir])).exitCode).toBe(0);
    await settled(dir);

    // Without --follow: the replay up to now, then exit.
    const replay = await mvm(['events', '--data-dir', dir]);
    expect(replay.exitCode, replay.stderr).toBe(0);
    const lines = replay.stdout.split('\n');
    expect(lines[0]).toMatch(/^ {4}1 {2}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z {2}acme-gateway-0 +- -> pending +created$/);
    expect(replay.stdout).toMatch(/^ +\d+ {2}\S+ {2}acme-gateway-0 +starting-services -> running +\S+$/m);
    const messages = (await mvm(['events', '--json', '--data-dir', dir])).stdout.trim().split('\n').map((l) => JSON.parse(l));
    // The API's messages: every journal entry, then the end-of-replay marker.
    expect(messages.at(-1)).toEqual({ type: 'replayed', seq: lines.length });
    const json = messages.filter((m) => m.type === 'journal');
    expect(json).toHaveLength(lines.length);
    expect(json.map((m) => m.entry.seq)).toEqual(json.map((_m, i) => i + 1));
    const head = json.at(-1).entry.seq as number;
    const tail = await mvm(['events', '--since', String(head - 2), '--json', '--data-dir', dir]);
    expect(tail.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.type === 'journal').map((m) => m.entry.seq)).toEqual([head - 1, head]);

    // --follow: live entries after the head, until SIGINT.
    const follow = spawnCli(['events', '--follow', '--since', String(head), '--data-dir', dir]);
    await waitFor('events --follow to connect', () => follow.stderr().includes('following events of'));
    const stop = await mvm(['stop', 'acme-workers-0', '--data-dir', dir]);
    expect(stop.stdout).toBe('accepted: stop acme-workers-0');
    await waitFor('the live stopped entry', () => /acme-workers-0 +stopping -> stopped/.test(follow.stdout()));
    const live = follow.stdout().trimEnd().split('\n');
    expect(live[0]).toMatch(new RegExp(`^ +${head + 1} {2}\\S+ {2}acme-workers-0 +running -> stopping +cmd\\.stop$`));
    follow.child.kill('SIGINT');
    expect((await follow.child).exitCode).toBe(0);

    // Restart serve: SIGTERM, then start again on the same data dir.
    const before = await instancesJson(dir);
    expect(before.find((i) => i.instance_id === 'acme-workers-0')?.status).toBe('stopped');
    const vmsBefore = hypervisor(dir);
    expect(Object.keys(vmsBefore)).toHaveLength(8);
    server.child.kill('SIGTERM');
    expect((await server.child).exitCode).toBe(0);
    expect(existsSync(path.join(dir, 'server.json'))).toBe(false);
    const down = await mvm(['status', '--data-dir', dir]);
    expect(down.exitCode).toBe(2);
    expect(down.stderr).toBe(`mvm-actors: no local mvm-actors serve found in ${dir}; start one with \`mvm-actors serve\` or pass --server URL`);
    // The VMs outlived serve.
    expect(hypervisor(dir)).toEqual(vmsBefore);

    server = await serve(dir);
    const after = await instancesJson(dir);
    expect(after.map((i) => [i.instance_id, i.status])).toEqual(before.map((i) => [i.instance_id, i.status]));
    expect(after.filter((i) => i.status === 'running')).toHaveLength(7);
    const status = await mvm(['status', '--data-dir', dir]);
    expect(status.stdout).toContain(`server      ${server.url} (ok)`);
    expect(status.stdout).toMatch(/^generation {2}7$/m);
    const vmsAfter = hypervisor(dir);
    expect(Object.keys(vmsAfter).sort()).toEqual(Object.keys(vmsBefore).sort());
    for (const [id, vm] of Object.entries(vmsAfter)) {
      expect(vm.bootCount, `${id} was booted again`).toBe(1);
      expect(vm.state, id).toBe(vmsBefore[id]!.state);
    }
    expect(vmsAfter['acme-gateway-0']!.state).toBe('running');
    // Nothing new happened to the running VMs while serve restarted.
    const since = await mvm(['events', '--since', String(head), '--json', '--data-dir', dir]);
    const transitions = since.stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.type === 'journal').map((m) => m.entry).filter((e) => e.kind === 'transition');
    expect(transitions.map((e) => `${e.instance_id} ${e.from}->${e.to}`)).toEqual(['acme-workers-0 running->stopping', 'acme-workers-0 stopping->stopped']);
  });

  it('says what to do when there is no server, the server is gone, or the token is wrong', async () => {
    const nowhere = await tempDir();
    const none = await mvm(['instances', '--data-dir', nowhere]);
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toBe(`mvm-actors: no local mvm-actors serve found in ${nowhere}; start one with \`mvm-actors serve\` or pass --server URL`);

    const port = await closedPort();
    const refused = await mvm(['status', '--server', `http://127.0.0.1:${port}`, '--data-dir', nowhere]);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toBe(`mvm-actors: cannot reach mvm-actors serve at http://127.0.0.1:${port}: ECONNREFUSED; start one with \`mvm-actors serve\` or pass --server URL`);
    const viaEnv = await mvm(['events', '--data-dir', nowhere], { env: { MVM_ACTORS_SERVER: `http://127.0.0.1:${port}`, MVM_ACTORS_TOKEN: 'x'.repeat(20) } });
    expect(viaEnv.exitCode).toBe(2);
    expect(viaEnv.stderr).toContain(`cannot reach mvm-actors serve at http://127.0.0.1:${port} (from $MVM_ACTORS_SERVER): ECONNREFUSED`);

    // A server.json left behind by a serve that was killed.
    await writeFile(path.join(nowhere, 'server.json'), JSON.stringify({ url: `http://127.0.0.1:${port}`, pid: 2 ** 22 + 1, token_file: path.join(nowhere, 'api-token') }));
    const gone = await mvm(['status', '--data-dir', nowhere]);
    expect(gone.exitCode).toBe(2);
    expect(gone.stderr).toContain(`names pid ${2 ** 22 + 1}, which is not running: that serve has exited`);

    const dir = await tempDir();
    await serve(dir);
    const wrong = path.join(dir, 'wrong-token');
    await writeFile(wrong, 'not-the-token-0123456789\n', { mode: 0o600 });
    await chmod(wrong, 0o600);
    for (const command of [['instances'], ['events']]) {
      const denied = await mvm([...command, '--token-file', wrong, '--data-dir', dir]);
      expect(denied.exitCode, command[0]).toBe(2);
      expect(denied.stderr, command[0]).toMatch(new RegExp(`^mvm-actors: http://127\\.0\\.0\\.1:\\d+ refused token file ${wrong.replace(/[.]/g, '\\.')} \\(--token-file\\) \\(401 unauthorized\\); pass --token-file`));
    }
    const envToken = await mvm(['instances', '--data-dir', dir], { env: { MVM_ACTORS_TOKEN: 'not-the-token-0123456789' } });
    expect(envToken.exitCode).toBe(2);
    expect(envToken.stderr).toContain('refused the token in $MVM_ACTORS_TOKEN (401 unauthorized)');
    const missing = await mvm(['instances', '--token-file', path.join(dir, 'nope'), '--data-dir', dir]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain(`token file ${path.join(dir, 'nope')} (--token-file) does not exist`);
    // The right token, found through server.json, works.
    expect((await mvm(['instances', '--data-dir', dir])).exitCode).toBe(0);
    expect((await mvm(['events', '--since', 'x', '--data-dir', dir])).stderr).toBe('mvm-actors: --since x: expected a journal sequence number (0 or more)');
  });
});
