/**
 * Moves bytes between one downstream socket and one upstream lease, both ways, with backpressure and
 * half-close. When the upstream dies (anything but a clean FIN), the downstream is reset at once so the
 * app's own pool sees ECONNRESET and reconnects instead of hanging on a dead byte stream.
 */
import type { Socket } from 'node:net';
import type { CloseReason } from '../errors.js';
import type { Lease } from '../pool/index.js';
import type { Clock } from '../util/clock.js';

/** Reasons for which the upstream ended cleanly (FIN both ways): the downstream is half-closed, not reset. */
const CLEAN_REASONS: ReadonlySet<CloseReason> = new Set<CloseReason>(['peer_closed', 'downstream_closed']);

/** Resets a socket (RST) if it is still open; otherwise does nothing. */
export function resetSocket(socket: Socket): void {
  if (!socket.destroyed) socket.resetAndDestroy();
}

/**
 * Pipes `down` <-> `lease.socket`. `onUpstreamLost` is called once if the downstream was reset because the
 * upstream died. The downstream must already have an 'error' listener.
 */
/** What the downstream sent (and whether it half-closed) before the upstream was ready. */
export interface EarlyDownstream {
  readonly early: readonly Buffer[];
  readonly hasEnded: boolean;
}

export function pipeTcp(down: Socket, lease: Lease, clock: Clock, onUpstreamLost: (reason: CloseReason) => void, before: EarlyDownstream): void {
  const up = lease.socket;
  const conn = lease.conn;
  let hasDownstreamFailed = false;

  for (const chunk of lease.takeIdleData()) down.write(chunk);
  for (const chunk of before.early) {
    conn.bytesSent += chunk.length;
    up.write(chunk);
  }

  up.on('data', (chunk: Buffer) => {
    conn.noteReceived(clock.now());
    if (!down.write(chunk)) up.pause();
  });
  down.on('drain', () => up.resume());
  down.on('data', (chunk: Buffer) => {
    conn.bytesSent += chunk.length;
    if (!up.write(chunk)) down.pause();
  });
  up.on('drain', () => down.resume());

  // Half-close: FIN travels on, the other direction keeps flowing (allowHalfOpen on both sockets).
  up.on('end', () => down.end());
  if (before.hasEnded) lease.end();
  else down.on('end', () => lease.end());

  up.on('close', () => {
    const reason = conn.decideReason({ kind: 'local', reason: 'other' });
    if (CLEAN_REASONS.has(reason) || down.destroyed) return;
    resetSocket(down);
    onUpstreamLost(reason);
  });
  down.on('error', () => {
    hasDownstreamFailed = true;
  });
  down.on('close', () => {
    if (up.destroyed) return;
    // The app reset us: pass the abort on. A clean close after both FINs: let the upstream flush and close.
    if (hasDownstreamFailed) lease.destroy('downstream_closed', true);
    else if (!up.writableEnded) lease.destroy('downstream_closed');
  });

  up.resume();
  down.resume();
}
