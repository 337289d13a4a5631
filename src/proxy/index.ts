// Proxy: moves bytes between a downstream and an upstream lease: tcp byte pipe (backpressure, half-close,
// reset on upstream death) and the HTTP exchange (undici dispatch straight to the response, retries,
// WebSocket tunnel). Owns no sockets beyond the call; never logs per chunk.
export { pipeTcp, resetSocket } from './tcp-pipe.js';
export { Attempt, KEEPALIVE_HINT_MARGIN_MS, proxyHttpRequest } from './http-exchange.js';
export type { ExchangeHost, SidecarErrorReason } from './http-exchange.js';
export { proxyWebSocket } from './http-tunnel.js';
export type { TunnelHost } from './http-tunnel.js';
export { absoluteToOriginForm, isRetrySafe, requestHeaders, responseHeaders, upgradeTokens } from './http-headers.js';
export { RetryBudget } from './retry-budget.js';
