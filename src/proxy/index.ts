// Proxy: moves bytes between a downstream socket and an upstream lease (backpressure, half-close, reset on
// upstream death). Owns no sockets beyond the call; never logs per chunk.
export { pipeTcp, resetSocket } from './tcp-pipe.js';
