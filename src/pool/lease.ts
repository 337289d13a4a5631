/**
 * One checkout of a connection. `release()` and `destroy()` are idempotent; the first call ends the lease.
 */
import type net from 'node:net';
import type { CloseReason } from '../errors.js';
import type { UpstreamConn } from './conn.js';
import type { H1Driver } from './h1-driver.js';
import type { Pool } from './pool.js';

/** What takeIdleData returns when nothing arrived (shared, never written to). */
const NO_DATA: readonly Buffer[] = [];

export class Lease {
  private isEnded = false;
  constructor(
    private readonly pool: Pool,
    readonly conn: UpstreamConn,
  ) {}

  get socket(): net.Socket {
    return this.conn.socket;
  }

  /** Bytes that arrived while the connection was idle; the caller must forward them first. */
  takeIdleData(): readonly Buffer[] {
    const data = this.conn.idleData;
    this.conn.idleData = undefined;
    this.conn.idleDataBytes = 0;
    return data ?? NO_DATA;
  }

  /** Half-closes towards the upstream (we send FIN) because the downstream did. */
  end(): void {
    this.conn.hasLocalEnded = true;
    this.conn.socket.end();
  }

  /** The HTTP/1 driver of this connection (http routes); throws on a raw connection, which has none. */
  get h1(): H1Driver {
    const d = this.conn.h1;
    if (d === undefined) throw new Error('connection has no HTTP/1 driver');
    return d;
  }

  /** Returns the connection to the idle set (keep-alive reuse). */
  release(): void {
    if (this.isEnded) return;
    this.isEnded = true;
    this.pool.release(this.conn);
  }

  /** Retires the connection with a reason; `reset` sends RST instead of FIN. */
  destroy(reason: CloseReason, reset = false): void {
    if (this.isEnded) return;
    this.isEnded = true;
    this.pool.fail(this.conn, reason, reset);
  }
}
