/**
 * undici's Client class from its own module, not from the package index. The index also loads fetch,
 * WebSocket, EventSource, the cache and cookie code, the mock agents, the interceptors and SOCKS (and through
 * them node:crypto, zlib, worker_threads, webstreams): requiring `undici` costs ~20 MiB RSS in a fresh Node
 * 20, `undici/lib/dispatcher/client.js` ~11 MiB (bench/idle-rss.ts, 2026-12-02). The class is the very same
 * one the index exports, so undici's types apply unchanged (type-only import, erased at compile time).
 */
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

export const Client = createRequire(import.meta.url)('undici/lib/dispatcher/client.js') as typeof Undici.Client;
export type Client = Undici.Client;
