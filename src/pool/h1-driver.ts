/**
 * HTTP/1 protocol driver of one upstream connection: the undici Client bound to exactly this socket, created
 * on the connection's first request and owned by the connection (it used to live in a WeakMap in the HTTP
 * listener). It also keeps the connection's in-flight accounting: a request was written and its response has
 * not completed. The close reason reads that (liveness/classify: ETIMEDOUT with a request outstanding is
 * user_timeout, and undici's own error with nothing outstanding means the upstream sent unsolicited bytes).
 */
import type { Socket } from 'node:net';
import { Client } from './undici-client.js';
import type { Dispatcher, buildConnector } from 'undici';
import type { Lease } from './lease.js';

/** undici's per-Client webSocket / eventSource options: none, shared by every Client (undici only reads them). */
const NO_OPTIONS = Object.freeze({});

export class H1Driver {
  private client: Client | undefined;
  /** A request was handed to the Client and its response has not completed or failed yet (pipelining 1). */
  hasRequestInFlight = false;

  constructor(
    private readonly socket: Socket,
    /** The route's origin, one URL object shared by all its connections (undici keeps it as given). */
    private readonly origin: URL,
    /** undici's keep-alive timer is only a backstop far beyond ours (ours retires first). */
    private readonly backstopMs: number,
  ) {}

  /** The Client exists (it then reads the socket for the connection's whole life). */
  get hasClient(): boolean {
    return this.client !== undefined;
  }

  /** Sends one request on this connection. `requestEnded()` must follow once its response completes or fails. */
  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): void {
    this.hasRequestInFlight = true;
    this.isAwaitingHead = true;
    (this.client ??= this.createClient()).dispatch(opts, handler);
  }

  /** The lease to release once the current microtask queue runs (see releaseSoon). */
  private releasing: Lease | undefined;
  private readonly releaseNow = (): void => {
    const lease = this.releasing;
    this.releasing = undefined;
    lease?.release();
  };

  /**
   * Releases `lease` one microtask later: undici destroys the socket synchronously right after onComplete when
   * the response did not allow keep-alive, and the pool must see that and retire it instead of idling it. One
   * function per connection (pipelining 1: one release at a time), not a closure per request.
   */
  releaseSoon(lease: Lease): void {
    this.releasing = lease;
    queueMicrotask(this.releaseNow);
  }

  requestEnded(): void {
    this.hasRequestInFlight = false;
    this.isAwaitingHead = false;
  }

  /**
   * "Last write newer than last read" for the close reason (liveness/classify): true from dispatch until the
   * final response head arrived. A death in the middle of a long body (after the head) is a keepalive death,
   * not a user timeout: nothing of ours was waiting for an answer.
   */
  isAwaitingHead = false;

  /** The final (>= 200) response head of the outstanding request arrived. */
  headReceived(): void {
    this.isAwaitingHead = false;
  }

  /** The socket went to undici's Client (its connector asks once per socket; see handOver). */
  private isHandedOver = false;

  /**
   * undici's connector: hands it our connected socket exactly once. undici asks again only after that socket
   * closed, and a closed connection is never leased again, so a second call is a bug we refuse loudly. The
   * callback must run asynchronously: undici calls the connector from inside its resume loop and ignores a
   * resume re-entered synchronously, which would leave the first request queued forever. One shared function
   * bound to the driver (a bound function, 48 B) instead of a closure and its context per connection (~96 B).
   */
  private static handOver(this: H1Driver, _opts: unknown, cb: buildConnector.Callback): void {
    if (this.isHandedOver || this.socket.destroyed) {
      process.nextTick(cb, new Error('pooled connection already used'), null);
    } else {
      this.isHandedOver = true;
      process.nextTick(cb, null, this.socket);
    }
  }

  private createClient(): Client {
    return new Client(this.origin, {
      connect: H1Driver.handOver.bind(this),
      pipelining: 1,
      keepAliveTimeout: this.backstopMs,
      keepAliveMaxTimeout: this.backstopMs,
      // With threshold 0 undici's own timer fires at the upstream's hint; ours fires a margin earlier.
      keepAliveTimeoutThreshold: 0,
      headersTimeout: 0,
      bodyTimeout: 0,
      // undici keeps these as given (default: a new {} each, 56 B per connection) and only reads them, for
      // WebSocket and EventSource use we never make of this Client: one shared empty object for all.
      webSocket: NO_OPTIONS,
      eventSource: NO_OPTIONS,
    });
  }
}

/**
 * The pool's driver hook for http routes: one H1Driver per new socket, speaking to `origin`. Imported lazily
 * by the composition root (only for http routes), so a tcp-only sidecar never loads undici.
 */
export function h1DriverFactory(origin: string): (socket: Socket, backstopMs: number) => H1Driver {
  // Parsed once: given a string, undici's Client would parse its own URL per connection (~0.3 KiB each, idle).
  const url = new URL(origin);
  return (socket, backstopMs) => new H1Driver(socket, url, backstopMs);
}
