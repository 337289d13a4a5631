// Socket options: set nodelay/keepalive/user timeout on one socket and read them back (the only place that
// sets them), TCP_INFO, and the startup self-check. Owns no sockets and keeps no state per socket.
export { applySockopts, expectedSockopts, readSockopts, SOCKOPT_NAMES } from './apply.js';
export type { ApplyResult, EffectiveSockopts, SockoptFailure, SockoptName } from './apply.js';
export { selfCheckSockopts } from './self-check.js';
export { decodeTcpInfo, readTcpInfo, TCP_INFO_MIN_BYTES } from './tcp-info.js';
export type { TcpInfo } from './tcp-info.js';
export { socketFd } from './native.js';
