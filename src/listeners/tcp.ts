/**
 * TCP listener: accepts downstream connections for one route, obtains an upstream lease for each (a warm
 * spare or a fresh connect) and hands both to the pipe. Never throws across the event loop: every failure
 * becomes a downstream reset with a reason.
 */
import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import type { RouteConfig } from '../config/index.js';
import type { DownstreamRejectReason, DownstreamResetReason } from '../errors.js';
import { AcquireError } from '../errors.js';
import type { Pool } from '../pool/index.js';
// By file, not proxy/index.js: the HTTP exchange modules are not loaded for a tcp-only sidecar.
import { pipeTcp, resetSocket } from '../proxy/tcp-pipe.js';
import type { Clock } from '../util/clock.js';
import { FdBudget } from './fd-budget.js';
import { listenOn } from './listen.js';

/** Bytes of client data kept while the upstream connects; beyond this the client is paused (backpressure). */
const EARLY_BUFFER_BYTES = 64 * 1024;

export interface ListenerEvents {
  /** A downstream was reset by us, with why. */
  downstreamReset: [reason: DownstreamResetReason];
  /** A downstream connection was accepted (before any upstream exists). */
  accepted: [];
  /** A downstream was refused at accept (reset), with why; `err` only for accept_error. */
  downstreamRejected: [reason: DownstreamRejectReason, err?: Error];
}

export class TcpListener extends EventEmitter<ListenerEvents> {
  private readonly server: net.Server;
  private readonly active = new Set<net.Socket>();

  constructor(
    readonly route: RouteConfig,
    private readonly pool: Pool,
    private readonly clock: Clock,
    private readonly fds: FdBudget = new FdBudget(Infinity, 0),
  ) {
    super();
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.onConnection(s));
    // accept() failures (EMFILE/ENFILE): counted and logged; without a listener they would crash the process.
    this.server.on('error', (err: Error) => this.emit('downstreamRejected', 'accept_error', err));
  }

  /** Binds the listen address; resolves with the bound address (port 0 picks a free port). */
  listen(): Promise<net.AddressInfo> {
    return listenOn(this.server, this.route.listen);
  }

  get isListening(): boolean {
    return this.server.listening;
  }

  /** Open downstream connections. */
  get activeCount(): number {
    return this.active.size;
  }

  /**
   * Stops accepting; open connections go on. (server.close()'s callback waits for every open connection,
   * so it is not awaited here: the listening socket itself is closed synchronously.)
   */
  async stopAccepting(): Promise<void> {
    if (this.server.listening) this.server.close();
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
      this.emit('downstreamRejected', 'overflow');
      this.reject(down, 'overflow');
      return;
    }
    if (!this.fds.tryAdmit()) {
      this.emit('downstreamRejected', 'fd_reserve');
      resetSocket(down);
      return;
    }
    this.active.add(down);
    const abort = new AbortController();
    down.once('close', () => {
      this.active.delete(down);
      this.fds.release();
      abort.abort();
    });
    // Keep reading while the upstream connects: a paused socket would not notice the client leaving (FIN or
    // RST), so an abandoned connect could not be cancelled. What arrives meanwhile is kept (bounded) and sent
    // first; a client FIN is passed on once the upstream is there.
    const early: Buffer[] = [];
    let earlyBytes = 0;
    let hasEnded = false;
    const onEarlyData = (chunk: Buffer): void => {
      early.push(chunk);
      earlyBytes += chunk.length;
      if (earlyBytes >= EARLY_BUFFER_BYTES) down.pause();
    };
    const onEarlyEnd = (): void => {
      hasEnded = true;
    };
    down.on('data', onEarlyData);
    down.on('end', onEarlyEnd);
    this.pool.acquire(abort.signal).then(
      (lease) => {
        down.off('data', onEarlyData);
        down.off('end', onEarlyEnd);
        if (down.destroyed) {
          lease.destroy('downstream_closed');
          return;
        }
        pipeTcp(down, lease, this.clock, (reason) => this.emit('downstreamReset', reason), { early, hasEnded });
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
