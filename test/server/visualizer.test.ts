import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from '../../src/server/create-server.ts';
import { EXAMPLE_DESIRED_STATE } from '../helpers/fixtures.ts';
import { aTestHost, type TestHost } from '../host/helpers.ts';

/**
 * The statechart visualizer in a real browser: Debian's headless Chromium driven by
 * playwright-core, against a real server on a loopback port over a host with the documented
 * example applied (fake driver, simulated clock).
 */

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'viz-test-token-0123456789abcdef';
const SCREENSHOT = process.env.MVM_VIZ_SCREENSHOT ?? path.join(os.tmpdir(), `mvm-viz-${process.pid}.png`);

let t: TestHost;
let app: FastifyInstance;
let origin: string;
let browser: Browser;
let page: Page;
const requested: string[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `The visualizer test drives Debian's Chromium at ${CHROMIUM}, which is missing.\n` +
        '  Debian/Ubuntu (as root): apt-get install -y chromium\n' +
        '  (.ci/run and test/tools/require-chromium.mjs install it on a fresh Debian machine.)',
    );
  }
  t = await aTestHost();
  app = await createServer(t.host, { token: TOKEN });
  const applied = await app.inject({ method: 'PUT', url: '/v1/desired-state', headers: { authorization: `Bearer ${TOKEN}` }, payload: JSON.parse(await readFile(EXAMPLE_DESIRED_STATE, 'utf8')) });
  expect(applied.statusCode).toBe(200);
  await t.settle();
  await app.listen({ host: '127.0.0.1', port: 0 });
  origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  page.setDefaultTimeout(10_000); // a broken page fails in seconds, not minutes
  page.on('request', (request) => requested.push(request.url()));
  page.on('websocket', (socket) => requested.push(socket.url()));
  page.on('pageerror', (error) => pageErrors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') pageErrors.push(`console.${message.type()}: ${message.text()}`);
  });
});

afterAll(async () => {
  await browser?.close();
  await app?.close();
  await t?.host.close();
});

/** What the chart container says is highlighted. */
const activeStates = () => page.locator('#chart').getAttribute('data-active-states');
/**
 * Waits, polling in the page, until the chart container's data-* attributes have these values.
 * (Page functions reach the DOM through globalThis: this project's TypeScript has no DOM types.
 * They are functions, not strings: the page's CSP forbids eval.)
 */
const chartShows = (want: Record<string, string>) =>
  page.waitForFunction(
    (expected) => {
      const data = (globalThis as any).document.querySelector('#chart').dataset;
      return Object.entries(expected).every(([key, value]) => data[key] === value);
    },
    want,
    { timeout: 10_000 },
  );
/** The <title>s of the highlighted node groups (state paths) and cluster groups. */
const highlighted = (selector: string) => page.locator(`#chart ${selector}`).evaluateAll((groups) => groups.map((g) => g.querySelector(':scope > title')?.textContent ?? '?'));

describe('the statechart visualizer (/viz) in headless Chromium', () => {
  it('answers 401 without the token, for the page and both of its scripts', async () => {
    for (const url of ['/viz', '/viz/app.js', '/viz/viz-standalone.js', '/viz?token=wrong-token-0123456789']) {
      const res = await fetch(`${origin}${url}`);
      expect(res.status, url).toBe(401);
      expect(((await res.json()) as { code: string }).code).toBe('MVM_ERR_UNAUTHORIZED');
    }
    const res = await fetch(`${origin}/viz?token=${TOKEN}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    // Only this origin: the page cannot reach a CDN even by mistake.
    expect(res.headers.get('content-security-policy')).toMatch(/default-src 'none'.*connect-src 'self'/);
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
  });

  it('loads with the token and lists tenants, pools and instances with status and reason', async () => {
    const response = await page.goto(`${origin}/viz?token=${TOKEN}`);
    expect(response?.status()).toBe(200);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 });
    await page.waitForSelector('#conn[data-state="live"]');
    expect(await page.locator('#role-select option').allTextContents()).toEqual(['builder', 'capability-imessage', 'gateway', 'worker']);
    expect(await page.locator('#tenants .tenant').evaluateAll((ts) => ts.map((el) => el.getAttribute('data-tenant-id')))).toEqual(['acme', 'globex']);
    expect(await page.locator('[data-tenant-id="acme"] .pool').evaluateAll((ps) => ps.map((el) => el.getAttribute('data-pool-id')))).toEqual(['builds', 'gateway', 'workers']);
    const row = (id: string) => page.locator(`#tenants tr[data-instance-id="${id}"]`);
    expect(await row('acme-workers-0').getAttribute('data-status')).toBe('running');
    expect(await row('globex-imessage-0').getAttribute('data-status')).toBe('refused');
    expect(await row('globex-imessage-0').locator('.reason').textContent()).toBe('missing-drive:secrets:missing-secret:imessage-credentials');
    expect(await row('acme-workers-3').locator('.reason').textContent()).toBe('deferred cmd.sleep');
    expect(await page.locator('[data-tenant-id="acme"] .tenant-head .count').textContent()).toBe('7 instances: 7 running');
  });

  it('draws the gateway chart with Graphviz (WASM) from the generated DOT', async () => {
    await page.selectOption('#role-select', 'gateway');
    await page.waitForSelector('#chart[data-role="gateway"] svg');
    const nodes = await highlighted('g.node');
    expect(nodes).toEqual(expect.arrayContaining(['pending', 'preflight', 'refused', 'launching.booting', 'launching.starting.openclaw-gateway.probing', 'running.lifecycle.idle', 'running.connector-whatsapp.enabled', 'stopped']));
    expect(await highlighted('g.cluster')).toEqual(expect.arrayContaining(['cluster_launching', 'cluster_running', 'cluster_running.lifecycle', 'cluster_running.ingress']));
    // The labels are the state names; the edges carry their events.
    expect(await page.locator('#chart g.node text').allTextContents()).toEqual(expect.arrayContaining(['preflight', 'idle', 'sleep-deferred']));
    expect(await page.locator('#chart g.edge text').allTextContents()).toEqual(expect.arrayContaining(['cmd.stop']));
    // A role chart alone highlights nothing.
    expect(await activeStates()).toBe('');
    expect(await highlighted('g.active')).toEqual([]);
  });

  it('highlights the selected instance\'s current state, then follows it live when it stops', async () => {
    await page.click('button[data-instance-id="acme-workers-0"]');
    await chartShows({ instance: 'acme-workers-0', role: 'worker' });
    expect(await page.locator('#role-select').inputValue()).toBe('worker');
    expect(await activeStates()).toBe('running running.lifecycle running.lifecycle.idle running.reload running.reload.idle');
    expect((await highlighted('g.node.active-leaf')).sort()).toEqual(['running.lifecycle.idle', 'running.reload.idle']);
    expect((await highlighted('g.cluster.active')).sort()).toEqual(['cluster_running', 'cluster_running.lifecycle', 'cluster_running.reload']);
    // Painted, not only classed: the current state is filled with the highlight colour.
    const fill = await page.locator('#chart g.node.active-leaf > path, #chart g.node.active-leaf > polygon').first().evaluate((shape) => (globalThis as any).getComputedStyle(shape).fill);
    expect(fill).toBe('rgb(255, 179, 0)');
    await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, '-running.png'), fullPage: true });

    // The host moves the instance; the page learns it over /v1/events only (it never polls).
    expect(t.host.stop('acme-workers-0')).toMatchObject({ accepted: true });
    await t.settle();
    await chartShows({ activeStates: 'stopped' });
    expect(await highlighted('g.active')).toEqual(['stopped']);
    expect(await page.locator('#tenants tr[data-instance-id="acme-workers-0"]').getAttribute('data-status')).toBe('stopped');

    // The timeline, newest first: the stop and its completion on top, the launch below.
    const rows = await page.locator('#timeline tbody tr').evaluateAll((trs) =>
      trs.map((tr) => ({ kind: tr.getAttribute('data-kind'), move: tr.querySelector('.move')?.textContent, event: tr.querySelector('.event')?.textContent, time: tr.querySelector('.time')?.textContent })),
    );
    expect(rows.slice(0, 2)).toEqual([
      { kind: 'transition', move: 'stopping → stopped', event: 'xstate.done.actor.stop', time: '2025-11-24 16:00:00.000' },
      { kind: 'transition', move: 'running → stopping', event: 'cmd.stop', time: '2025-11-24 16:00:00.000' },
    ]);
    expect(rows.at(-1)).toMatchObject({ move: '∅ → pending' });
    const seqs = await page.locator('#timeline tbody tr').evaluateAll((trs) => trs.map((tr) => Number(tr.getAttribute('data-seq'))));
    expect(seqs).toEqual([...seqs].sort((a, b) => b - a));
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect((await stat(SCREENSHOT)).size).toBeGreaterThan(10_000);
  });

  it('shows the reasons of refusals and deferrals in the timeline, and every region of a parallel state', async () => {
    expect(t.host.sleep('acme-gateway-0')).toMatchObject({ accepted: false, reason: 'sleep-floor:gateway:1' });
    await t.settle();
    await page.click('button[data-instance-id="acme-gateway-0"]');
    await chartShows({ instance: 'acme-gateway-0' });
    expect((await page.locator('#chart').getAttribute('data-active-leaves'))?.split(' ').sort()).toEqual([
      'running.connector-telegram.disabled',
      'running.connector-whatsapp.enabled',
      'running.ingress.open',
      'running.lifecycle.idle',
      'running.reload.idle',
    ]);
    expect(await page.locator('#chart').getAttribute('data-missing-states')).toBe('');
    const refusal = page.locator('#timeline tbody tr').first();
    expect(await refusal.getAttribute('data-kind')).toBe('refusal');
    expect(await refusal.locator('.event').textContent()).toBe('cmd.sleep');
    expect(await refusal.locator('.reason').textContent()).toBe('sleep-floor:gateway:1');
    // The tenant's recent refusals are listed with it.
    await page.waitForFunction(() => (globalThis as any).document.querySelector('[data-tenant-id="acme"] .refusals')?.textContent.includes('sleep-floor:gateway:1'));

    await page.click('button[data-instance-id="acme-workers-3"]');
    await chartShows({ instance: 'acme-workers-3' });
    expect(await activeStates()).toBe('running running.lifecycle running.lifecycle.sleep-deferred running.reload running.reload.idle');
    const deferral = page.locator('#timeline tbody tr[data-kind="deferral"]').first();
    expect(await deferral.locator('.event').textContent()).toBe('cmd.sleep');
    expect(await deferral.locator('.reason').textContent()).toBe('until min runtime');
  });

  it('fetched nothing outside its own origin and logged no errors', async () => {
    const host = new URL(origin).host;
    expect(requested.length).toBeGreaterThan(5);
    expect(requested.filter((url) => !url.startsWith('data:') && new URL(url).host !== host)).toEqual([]);
    expect(requested).toEqual(expect.arrayContaining([expect.stringMatching(/\/viz\/viz-standalone\.js\?token=/), expect.stringMatching(/^ws:\/\/127\.0\.0\.1:\d+\/v1\/events\?since=0&token=/)]));
    expect(pageErrors).toEqual([]);
  });
});
