/**
 * The connector: opens the socket and, once connected, applies the socket options in this one place (like
 * linkerd2-proxy's connect.rs). Failures to set an option are returned to be reported and tolerated; the
 * startup self-check already refused options this kernel cannot set.
 */
import net from 'node:net';
import type { Socket } from 'node:net';
import type { PoolConfig } from '../config/index.js';
import { applySockopts } from '../sockopts/index.js';
import type { ApplyResult, EffectiveSockopts, SockoptFailure } from '../sockopts/index.js';
import type { UpstreamConn } from './conn.js';

/**
 * Starts a TCP connect to one endpoint of the route (an address, already resolved by the endpoint set; the
 * route's host name stays in logs). allowHalfOpen: FIN travels on per direction (tcp half-close).
 */
export function openSocket(address: string, port: number): Socket {
  return net.connect({ host: address, port, allowHalfOpen: true });
}

/** Sets nodelay, keepalive and TCP_USER_TIMEOUT on a connected socket and reads them back. */
export function configureSocket(socket: Socket, keepalive: PoolConfig['keepalive']): ApplyResult {
  return applySockopts(socket, keepalive);
}

/**
 * The TCP handshake of `conn` completed: records the connect facts (time, addresses, the jittered max-age
 * deadline, +/-10 %), applies the socket options and returns the options that could not be set (to be
 * reported and tolerated). Shared by Pool and H2Pool so a connection is set up the same way whatever its
 * protocol.
 */
export function establish(conn: UpstreamConn, config: Pick<PoolConfig, 'keepalive' | 'maxAgeMs'>, now: number): readonly SockoptFailure[] {
  const socket = conn.socket;
  conn.connectedAt = now;
  conn.lastRecvAt = now;
  conn.remoteAddress = socket.remoteAddress;
  conn.remotePort = socket.remotePort;
  conn.localPort = socket.localPort;
  conn.maxAgeAt = now + config.maxAgeMs * (0.9 + 0.2 * Math.random());
  const result = configureSocket(socket, config.keepalive);
  conn.sockopts = shared(result.effective);
  return result.failures;
}

/** The last options read back; connections whose options read back the same share this one object. */
let lastSockopts: EffectiveSockopts | undefined;

/**
 * Every connection of a route normally reads back the same six values: they share one frozen object instead of
 * holding a copy each (72 B per idle connection). Compared field by field once per connect, never per request.
 */
function shared(e: EffectiveSockopts | undefined): EffectiveSockopts | undefined {
  const l = lastSockopts;
  if (e === undefined) return undefined;
  if (l !== undefined && l.noDelay === e.noDelay && l.keepAlive === e.keepAlive && l.keepIdleSec === e.keepIdleSec
    && l.keepIntvlSec === e.keepIntvlSec && l.keepCnt === e.keepCnt && l.userTimeoutMs === e.userTimeoutMs) return l;
  lastSockopts = Object.freeze(e);
  return lastSockopts;
}
