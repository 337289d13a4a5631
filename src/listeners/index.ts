// Listeners: accept downstream connections per route and hand them to proxy/ with an upstream lease.
// They decide reuse; they never set socket options (pool/ does) and never log (events are observed).
export { TcpListener } from './tcp.js';
export type { ListenerEvents } from './tcp.js';
export { HttpListener } from './http.js';
export type { CodeClass, HttpListenerEvents } from './http.js';
