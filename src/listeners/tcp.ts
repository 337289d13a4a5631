/**
 * TCP listener: accepts downstream connections for one route, obtains an upstream lease for each (a warm
 * spare or a fresh connect) and hands both to the pipe. Never throws across the event loop: every failure
 * becomes a downstream reset with a reason.
 */
import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import type { RouteConfig } from '../config/index.js';
import type { DownstreamResetReason } from '../errors.js';
import { AcquireError } from '../errors.js';
import type { Pool } from '../pool/index.js';
import { pipeTcp, resetSocket } from '../proxy/index.js';
import type { Clock } from '../util/clock.js';

export interface ListenerEvents {
  /** A downstream was reset by us, with why. */
  downstreamReset: [reason: DownstreamResetReason];
  /** A downstream connection was accepted (before any upstream exists). */
  accepted: [];
}

export class TcpListener extends EventEmitter<ListenerEvents> {
  private readonly server: net.Server;
  private readonly active = new Set<net.Socket>();

  constructor(
    readonly route: RouteConfig,
    private readonly pool: Pool,
    private readonly clock: Clock,
  ) {
    super();
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (s) => this.onConnection(s));
  }

  /** Binds the listen address; resolves with the bound address (port 0 picks a free port). */
  async listen(): Promise<net.AddressInfo> {
    this.server.listen(this.route.listen.port, this.route.listen.host);
    await Promise.race([
      once(this.server, 'listening'),
      once(this.server, 'error').then(([err]) => {
        throw err;
      }),
    ]);
    return this.server.address() as net.AddressInfo;
  }

  get isListening(): boolean {
    return this.server.listening;
  }

  /** Open downstream connections. */
  get activeCount(): number {
    return this.active.size;
  }

  /**
   * Stops accepting; open connections go on. Resolves as soon as the listening socket is closed, not when the
   * open connections have ended: net.Server.close's callback waits for those, which would keep the drain
   * timeout (lifecycle/shutdown.ts) from ever starting while an app connection stays open.
   */
  stopAccepting(): Promise<void> {
    if (this.server.listening) this.server.close();
    return Promise.resolve();
  }

  /** Resolves when no downstream connection is open any more. */
  async whenIdle(): Promise<void> {
    while (this.active.size > 0) {
      const [first] = this.active;
      if (first !== undefined) await once(first, 'close');
    }
  }

  /** Resets every open downstream (shutdown after the drain window). */
  resetAll(reason: DownstreamResetReason): void {
    for (const s of this.active) {
      if (!s.destroyed) {
        resetSocket(s);
        this.emit('downstreamReset', reason);
      }
    }
  }

  private onConnection(down: net.Socket): void {
    down.on('error', () => {
      // Handled by the pipe (as downstream_closed) or below; an error listener must exist from the start.
    });
    this.emit('accepted');
    if (this.active.size >= this.route.maxConnections) {
      this.reject(down, 'overflow');
      return;
    }
    this.active.add(down);
    const abort = new AbortController();
    down.once('close', () => {
      this.active.delete(down);
      abort.abort();
    });
    this.pool.acquire(abort.signal).then(
      (lease) => {
        if (down.destroyed) {
          lease.destroy('downstream_closed');
          return;
        }
        pipeTcp(down, lease, this.clock, (reason) => this.emit('downstreamReset', reason));
      },
      (err: unknown) => {
        if (down.destroyed) return;
        this.reject(down, err instanceof AcquireError ? err.reason : 'connect_error');
      },
    );
  }

  private reject(down: net.Socket, reason: DownstreamResetReason): void {
    resetSocket(down);
    this.emit('downstreamReset', reason);
  }
}
