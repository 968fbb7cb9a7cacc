import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { Host } from '../../host/host.ts';

const VIZ_DIR = fileURLToPath(new URL('../viz/', import.meta.url));

/**
 * Graphviz compiled to WebAssembly, the browser ("global") build of @viz-js/viz: it defines
 * `window.Viz` and carries the WASM inside the script, so the page fetches nothing else. The
 * package only exports its entry point, so the file is found next to it.
 */
function vizGlobalBuild(): string {
  const entry = createRequire(import.meta.url).resolve('@viz-js/viz'); // .../@viz-js/viz/dist/viz.cjs
  return path.join(path.dirname(entry), 'viz-global.js');
}

interface Assets {
  page: string;
  app: string;
  viz: string;
  /** Content-Security-Policy of the page: its own origin only, inline code pinned by hash. */
  csp: string;
}

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

async function loadAssets(): Promise<Assets> {
  const [page, app, viz] = await Promise.all([readFile(path.join(VIZ_DIR, 'index.html'), 'utf8'), readFile(path.join(VIZ_DIR, 'viz.js'), 'utf8'), readFile(vizGlobalBuild(), 'utf8')]);
  const inline = (tag: string) => [...page.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))].map((m) => sha256(m[1]!));
  const csp = [
    "default-src 'none'",
    // Graphviz runs as WebAssembly compiled in the page.
    `script-src 'self' 'wasm-unsafe-eval' ${inline('script').join(' ')}`,
    `style-src 'self' 'unsafe-inline'`,
    // API calls and the events WebSocket go to this server only.
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { page, app, viz, csp };
}

/**
 * GET /viz: the statechart visualizer. A plain HTML page and script (no build step, no framework,
 * no CDN): it draws each role's generated chart with Graphviz (WASM, bundled with the package),
 * lists tenants, pools and instances, and follows the selected instance live over /v1/events.
 * The routes sit behind the API token like /v1; the page passes its own `?token=` on to the API
 * (Authorization header), to the WebSocket and to its two scripts.
 */
export const visualizerRoutes: FastifyPluginAsyncZod<{ host: Host }> = async (app) => {
  let assets: Promise<Assets> | undefined;
  const load = () => (assets ??= loadAssets().catch((error: unknown) => {
    assets = undefined; // a missing file is reported per request, not cached forever
    throw error;
  }));
  const common = (reply: FastifyReply, cache = 'no-store') =>
    reply
      .header('cache-control', cache)
      .header('x-content-type-options', 'nosniff')
      // The token is in the page's URL; never send it on in a Referer.
      .header('referrer-policy', 'no-referrer');

  app.get('/viz', { schema: { hide: true } }, async (_request, reply) => {
    const { page, csp } = await load();
    return common(reply).header('content-security-policy', csp).header('x-frame-options', 'DENY').type('text/html; charset=utf-8').send(page);
  });
  app.get('/viz/app.js', { schema: { hide: true } }, async (_request, reply) => common(reply).type('text/javascript; charset=utf-8').send((await load()).app));
  app.get('/viz/viz-standalone.js', { schema: { hide: true } }, async (_request, reply) => common(reply, 'private, max-age=3600').type('text/javascript; charset=utf-8').send((await load()).viz));
};
