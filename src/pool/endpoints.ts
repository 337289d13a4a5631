/**
 * The endpoints of one route (issue 14): every address `upstream.host` resolves to, each with the route's
 * port, its state, its connections (the pool moves them, see Pool.moveTo), its ejection back-off and last
 * error. Protocol-agnostic: it knows connections only as entries of per-state sets and leaves connecting,
 * probing and retiring to the pool, which listens to its events.
 *
 * Endpoint states:
 * - `active`: picked for new requests/connections.
 * - `ejected`: a connection to it died of a dead-peer reason or a connect to it failed; not picked (unless
 *   the panic threshold is crossed) until `ejectedUntil`, then one probe connect decides (success: active).
 * - `removed`: gone from DNS; never picked; its busy connections finish, then it is forgotten.
 *
 * Picking is P2C (power of two choices, as Envoy's LEAST_REQUEST and Linkerd): two distinct random eligible
 * endpoints, the one with fewer in-flight (leased + connecting) wins. Slow start: an endpoint added after the
 * first resolution, or restored after an ejection, wins a P2C round only with probability = its weight,
 * which ramps linearly from 10 % to 100 % over SLOW_START_MS (so it takes traffic at once, but not a flood).
 * Panic threshold (Envoy's 50 %): when fewer than half of the live (non-removed) endpoints are active,
 * ejection is ignored and every live endpoint is eligible.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { AcquireFailure, CloseReason } from '../errors.js';
import type { Clock, Timer } from '../util/clock.js';
import type { UpstreamConn } from './conn.js';
import type { ResolvedAddress, ResolveFn } from './resolver.js';

export const ENDPOINT_STATES = ['active', 'ejected', 'removed'] as const;
export type EndpointState = (typeof ENDPOINT_STATES)[number];

/** Why an endpoint was ejected: the dead-peer close reason of one of its connections, or a connect failure. */
export type EjectReason = CloseReason | AcquireFailure;

/** How one resolution round ended (the `outcome` label). */
export const RESOLVE_OUTCOMES = ['changed', 'unchanged', 'failed'] as const;
export type ResolveOutcome = (typeof RESOLVE_OUTCOMES)[number];

/** Ejection back-off: 1 s, doubling per consecutive ejection, at most 30 s, jittered +/-20 %. */
export const EJECT_BASE_MS = 1000;
export const EJECT_MAX_MS = 30_000;
/** Fewer than this share of live endpoints active -> panic: every live endpoint is eligible. */
export const PANIC_THRESHOLD = 0.5;
/** Slow start window and the weight a new endpoint starts at. */
export const SLOW_START_MS = 10_000;
export const SLOW_START_MIN_WEIGHT = 0.1;
/** Re-resolution never runs more often than this, whatever the TTL (TTL 0 is common in cluster DNS). */
export const MIN_RESOLVE_INTERVAL_MS = 1000;

export interface EndpointSetConfig {
  readonly host: string;
  readonly port: number;
  readonly resolve: 'all' | 'once';
  readonly resolveIntervalMs: number;
}

export class Endpoint {
  state: EndpointState = 'active';
  /**
   * This endpoint's live connections by pool state. Only Pool.moveTo (H2Pool.setConnState for h2 sessions:
   * idle = no stream, leased = streams open or held) adds and removes entries, in the same call that changes
   * the connection's state, so the counts below cannot drift.
   */
  readonly conns = {
    connecting: new Set<UpstreamConn>(),
    idle: new Set<UpstreamConn>(),
    leased: new Set<UpstreamConn>(),
  };
  /** Ejections so far, re-ejections after a failed probe included (the /debug counter, as the metric). */
  ejections = 0;
  /** Consecutive ejections without a healthy spell of EJECT_MAX_MS in between: the back-off exponent. */
  streak = 0;
  /** Clock ms until which it stays ejected (undefined when not ejected). */
  ejectedUntil: number | undefined;
  /** A probe connect is due or under way (the back-off is over). */
  isProbeDue = false;
  restoredAt = -Infinity;
  lastError: string | undefined;
  /** Slow start begins here; -Infinity for the first resolution's endpoints (full weight at once). */
  warmFrom: number;
  timer: Timer | undefined;
  /** Warm spares to it closed unused within the refusal window, in a row (Pool's refill back-off exponent). */
  spareRefusals = 0;
  /** Failed spare connects to it in a row (the other refill back-off exponent). */
  spareFailures = 0;
  /** Clock ms before which no new spare goes to it (its refill back-off). */
  spareNotBefore = -Infinity;

  constructor(
    readonly address: string,
    readonly port: number,
    readonly family: 4 | 6,
    warmFrom: number,
  ) {
    this.warmFrom = warmFrom;
  }

  get key(): string {
    return endpointKey(this.address, this.port);
  }

  /** Live connections to it (any state but closed). */
  get connections(): number {
    return this.conns.connecting.size + this.conns.idle.size + this.conns.leased.size;
  }

  /** Requests (http) or app connections (tcp) on it now, plus connects under way: the P2C load. */
  get inFlight(): number {
    return this.conns.leased.size + this.conns.connecting.size;
  }

  /** Slow-start weight at `now`, 0.1..1. */
  weightAt(now: number): number {
    const f = (now - this.warmFrom) / SLOW_START_MS;
    return f >= 1 ? 1 : Math.max(SLOW_START_MIN_WEIGHT, f);
  }
}

export function endpointKey(address: string, port: number): string {
  return net.isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`;
}

/** One endpoint as /debug/endpoints shows it. */
export interface EndpointView {
  readonly address: string;
  readonly port: number;
  readonly state: EndpointState;
  readonly connections: number;
  readonly inFlight: number;
  readonly idle: number;
  readonly ejections: number;
  readonly lastError: string | null;
  /** Time left in the ejection back-off (0: a probe is due or under way); null when not ejected. */
  readonly ejectedForMs: number | null;
  /** Slow-start weight now (1 = full). */
  readonly weight: number;
}

export interface EndpointSetEvents {
  added: [ep: Endpoint];
  /** Gone from DNS: its idle connections must go (endpoint_removed), busy ones finish. */
  removed: [ep: Endpoint];
  ejected: [ep: Endpoint, reason: EjectReason, backoffMs: number];
  restored: [ep: Endpoint];
  /** The back-off of an ejected endpoint is over: the pool should open one probe connection to it. */
  probe: [ep: Endpoint];
  resolved: [outcome: ResolveOutcome, count: number];
  /** A resolution round failed; `hasSet`: the last good set keeps serving. */
  resolveFailed: [err: unknown, hasSet: boolean];
}

export interface EndpointSetOptions {
  /** Uniform [0, 1) (tests pass a seeded one). */
  readonly random?: () => number;
  /**
   * The P2C load of an endpoint; default `ep.inFlight` (leased + connecting connections: one request each for
   * HTTP/1, one app connection each for tcp). A multiplexing pool (HTTP/2) passes its open streams instead.
   */
  readonly load?: (ep: Endpoint) => number;
  /** What /debug shows as an endpoint's in-flight requests; default its leased connections (h2: its streams). */
  readonly inFlight?: (ep: Endpoint) => number;
}

/** Every endpoint of one route, with resolution, P2C picking and ejection. See the file comment. */
export class EndpointSet extends EventEmitter<EndpointSetEvents> {
  private readonly byKey = new Map<string, Endpoint>();
  /** Cache of the endpoints `pick` chooses from; rebuilt on every state change (sets are small). */
  private eligible: Endpoint[] = [];
  private isPanicking = false;
  private isStarted = false;
  private isClosed = false;
  private timer: Timer | undefined;
  private firstRound: Promise<void> | undefined;
  private failures = 0;
  private readonly random: () => number;
  private readonly load: (ep: Endpoint) => number;
  private readonly inFlight: (ep: Endpoint) => number;
  /** When the last round finished, its outcome and error (for /debug). */
  lastResolvedAt: number | undefined;
  lastResolveError: string | undefined;
  /** The name is an IP literal: one endpoint, no DNS, no timers. */
  readonly isLiteral: boolean;

  constructor(
    readonly route: string,
    readonly config: EndpointSetConfig,
    private readonly clock: Clock,
    private readonly resolveFn: ResolveFn,
    opts: EndpointSetOptions = {},
  ) {
    super();
    this.random = opts.random ?? Math.random;
    this.load = opts.load ?? inFlightOf;
    this.inFlight = opts.inFlight ?? leasedOf;
    const family = net.isIP(config.host);
    this.isLiteral = family !== 0;
    if (this.isLiteral) {
      this.applyAddresses([{ address: config.host, family: family as 4 | 6 }], true);
      this.isStarted = true;
      this.firstRound = Promise.resolve();
    }
  }

  /** A set exists (resolved at least once, or an IP literal). */
  get hasSet(): boolean {
    return this.byKey.size > 0;
  }

  /** Live (not removed) endpoints. */
  get size(): number {
    let n = 0;
    for (const ep of this.byKey.values()) if (ep.state !== 'removed') n++;
    return n;
  }

  /** More than one live endpoint (then an endpoint is a real backend, not a Service VIP). */
  get isMulti(): boolean {
    // Read per request (http-exchange): stop at the second live endpoint instead of counting them all.
    let n = 0;
    for (const ep of this.byKey.values()) if (ep.state !== 'removed' && ++n > 1) return true;
    return false;
  }

  get isPanic(): boolean {
    return this.isPanicking;
  }

  /** Every endpoint, removed-but-draining ones included. */
  list(): IterableIterator<Endpoint> {
    return this.byKey.values();
  }

  /** Starts resolving (idempotent); the returned promise settles when the first round is over. */
  start(): Promise<void> {
    if (!this.isStarted) {
      this.isStarted = true;
      this.firstRound = this.round();
    }
    return this.firstRound ?? Promise.resolve();
  }

  close(): void {
    this.isClosed = true;
    this.timer?.clear();
    for (const ep of this.byKey.values()) ep.timer?.clear();
  }

  /**
   * P2C over the eligible endpoints; `avoid` (the endpoint a retry just failed on, or every endpoint an
   * acquire already tried) is left out when another is eligible: an avoided endpoint is returned only when
   * every eligible one is avoided. undefined only when there is no set at all.
   */
  pick(avoid?: Endpoint | readonly Endpoint[]): Endpoint | undefined {
    let c = this.eligible;
    if (avoid !== undefined && c.length > 1) {
      const rest = c.filter((e) => !isAvoided(e, avoid));
      if (rest.length > 0) c = rest;
    }
    const n = c.length;
    if (n <= 1) return c[0];
    const i = Math.floor(this.random() * n);
    let j = Math.floor(this.random() * (n - 1));
    if (j >= i) j++;
    const a = c[i]!;
    const b = c[j]!;
    const la = this.load(a);
    const lb = this.load(b);
    const [win, lose] = la <= lb ? [a, b] : [b, a];
    if (win.warmFrom === -Infinity) return win;
    const w = win.weightAt(this.clock.now());
    return w >= 1 || this.random() < w ? win : lose;
  }

  /** The eligible endpoint with an idle connection and the fewest in flight (warm spares are there to be used). */
  pickWithIdle(avoid?: Endpoint | readonly Endpoint[]): Endpoint | undefined {
    let best: Endpoint | undefined;
    for (const ep of this.eligible) {
      if (ep.conns.idle.size === 0 || isAvoided(ep, avoid)) continue;
      if (best === undefined || this.load(ep) < this.load(best)) best = ep;
    }
    return best;
  }

  /**
   * Where a new warm spare goes: the eligible endpoint with the fewest idle + connecting connections, among
   * those whose spare back-off is over at `now`.
   */
  pickForSpare(now = this.clock.now()): Endpoint | undefined {
    let best: Endpoint | undefined;
    for (const ep of this.eligible) {
      if (ep.spareNotBefore > now) continue;
      if (best === undefined || ep.conns.idle.size + ep.conns.connecting.size < best.conns.idle.size + best.conns.connecting.size) best = ep;
    }
    return best;
  }

  /** True when `ep` may be given new work (eligible now). */
  isEligible(ep: Endpoint): boolean {
    return this.eligible.includes(ep);
  }

  /**
   * A connection to `ep` died of a dead-peer reason, or a connect to it failed: eject it for its back-off.
   * Returns false when it was already ejected (the back-off is not extended by every dying connection).
   */
  eject(ep: Endpoint, reason: EjectReason, err?: unknown): boolean {
    if (err !== undefined || ep.lastError === undefined) ep.lastError = describeError(reason, err);
    if (ep.state !== 'active') {
      if (ep.state === 'ejected' && ep.isProbeDue) this.backOff(ep, reason);
      return false;
    }
    const now = this.clock.now();
    // A healthy spell longer than the longest back-off forgives earlier ejections.
    if (now - ep.restoredAt > EJECT_MAX_MS) ep.streak = 0;
    ep.state = 'ejected';
    this.backOff(ep, reason);
    this.refresh();
    return true;
  }

  /** A connect to `ep` succeeded: an ejected endpoint whose back-off is over is active again. */
  noteConnected(ep: Endpoint): void {
    if (ep.state !== 'ejected' || !ep.isProbeDue) return;
    ep.isProbeDue = false;
    ep.ejectedUntil = undefined;
    ep.state = 'active';
    const now = this.clock.now();
    ep.restoredAt = now;
    ep.warmFrom = now;
    this.refresh();
    this.emit('restored', ep);
  }

  /** The pool could not probe now (no free slot): try again after a short while, without counting. */
  deferProbe(ep: Endpoint): void {
    if (ep.state !== 'ejected') return;
    ep.timer?.clear();
    ep.timer = this.clock.setTimeout(() => this.probeDue(ep), EJECT_BASE_MS);
  }

  /** A removed endpoint's last connection closed: forget it. */
  forget(ep: Endpoint): void {
    if (ep.state !== 'removed' || ep.connections > 0) return;
    if (this.byKey.get(ep.key) === ep) this.byKey.delete(ep.key);
  }

  snapshot(): EndpointView[] {
    const now = this.clock.now();
    return [...this.byKey.values()].map((ep) => ({
      address: ep.address,
      port: ep.port,
      state: ep.state,
      connections: ep.connections,
      inFlight: this.inFlight(ep),
      idle: ep.conns.idle.size,
      ejections: ep.ejections,
      lastError: ep.lastError ?? null,
      ejectedForMs: ep.state === 'ejected' ? Math.max(0, Math.round((ep.ejectedUntil ?? now) - now)) : null,
      weight: Math.round(ep.weightAt(now) * 100) / 100,
    }));
  }

  /** Endpoint counts by state (the metric gauge). */
  counts(): Record<EndpointState, number> {
    const out: Record<EndpointState, number> = { active: 0, ejected: 0, removed: 0 };
    for (const ep of this.byKey.values()) out[ep.state]++;
    return out;
  }

  // -------------------------------------------------------------------------------------------------------

  private backOff(ep: Endpoint, reason: EjectReason): void {
    const base = Math.min(EJECT_MAX_MS, EJECT_BASE_MS * 2 ** Math.min(ep.streak, 10));
    const ms = Math.min(EJECT_MAX_MS, Math.round(base * (0.8 + 0.4 * this.random())));
    ep.streak++;
    // Every back-off counts, a failed probe's too (the same count as the ejections metric).
    ep.ejections++;
    ep.isProbeDue = false;
    ep.ejectedUntil = this.clock.now() + ms;
    ep.timer?.clear();
    ep.timer = this.clock.setTimeout(() => this.probeDue(ep), ms);
    this.emit('ejected', ep, reason, ms);
  }

  private probeDue(ep: Endpoint): void {
    ep.timer = undefined;
    if (this.isClosed || ep.state !== 'ejected') return;
    ep.isProbeDue = true;
    this.emit('probe', ep);
  }

  /** Rebuilds the eligible cache and the panic flag. */
  private refresh(): void {
    const live: Endpoint[] = [];
    const active: Endpoint[] = [];
    for (const ep of this.byKey.values()) {
      if (ep.state === 'removed') continue;
      live.push(ep);
      if (ep.state === 'active') active.push(ep);
    }
    this.isPanicking = active.length < live.length * PANIC_THRESHOLD || (active.length === 0 && live.length > 0);
    this.eligible = this.isPanicking ? live : active;
  }

  private async round(): Promise<void> {
    this.timer = undefined;
    if (this.isClosed) return;
    let found: ResolvedAddress[] | undefined;
    let failure: unknown;
    try {
      found = await this.resolveFn(this.config.host);
      if (found.length === 0) failure = new Error(`${this.config.host}: the resolver answered no address`);
    } catch (err) {
      failure = err;
    }
    if (this.isClosed) return;
    this.lastResolvedAt = this.clock.now();
    if (failure !== undefined || found === undefined) {
      this.failures++;
      this.lastResolveError = describeError('resolve_failed', failure);
      this.emit('resolveFailed', failure, this.hasSet);
      // Never resolved: retry soon (1 s doubling up to the interval); otherwise at the usual interval.
      const delay = this.hasSet ? this.config.resolveIntervalMs : Math.min(this.config.resolveIntervalMs, MIN_RESOLVE_INTERVAL_MS * 2 ** Math.min(this.failures - 1, 10));
      if (this.config.resolve === 'all' || !this.hasSet) this.timer = this.clock.setTimeout(() => void this.round(), delay);
      return;
    }
    this.failures = 0;
    this.lastResolveError = undefined;
    const isChanged = this.applyAddresses(found, false);
    this.emit('resolved', isChanged ? 'changed' : 'unchanged', found.length);
    if (this.config.resolve !== 'all') return;
    let ttlMs = Infinity;
    for (const a of found) if (a.ttlSec !== undefined) ttlMs = Math.min(ttlMs, a.ttlSec * 1000);
    const delay = Math.max(MIN_RESOLVE_INTERVAL_MS, Math.min(this.config.resolveIntervalMs, ttlMs));
    this.timer = this.clock.setTimeout(() => void this.round(), delay);
  }

  /** Makes the set equal the answer; returns whether anything changed. */
  private applyAddresses(found: readonly ResolvedAddress[], isFirst: boolean): boolean {
    const now = this.clock.now();
    const isInitial = isFirst || this.byKey.size === 0;
    const keys = new Set<string>();
    let isChanged = false;
    for (const a of found) {
      const key = endpointKey(a.address, this.config.port);
      if (keys.has(key)) continue;
      keys.add(key);
      const known = this.byKey.get(key);
      if (known === undefined) {
        const ep = new Endpoint(a.address, this.config.port, a.family, isInitial ? -Infinity : now);
        this.byKey.set(key, ep);
        isChanged = true;
        this.refresh();
        this.emit('added', ep);
      } else if (known.state === 'removed') {
        // Back in DNS while still draining: active again, warming up as a new one.
        known.state = 'active';
        known.warmFrom = now;
        isChanged = true;
        this.refresh();
        this.emit('added', known);
      }
    }
    for (const ep of [...this.byKey.values()]) {
      if (keys.has(ep.key) || ep.state === 'removed') continue;
      ep.state = 'removed';
      ep.timer?.clear();
      ep.ejectedUntil = undefined;
      isChanged = true;
      this.refresh();
      this.emit('removed', ep);
      this.forget(ep);
    }
    return isChanged;
  }
}

/** `ep` is `avoid` or in it. */
export function isAvoided(ep: Endpoint, avoid: Endpoint | readonly Endpoint[] | undefined): boolean {
  return avoid === undefined ? false : avoid instanceof Endpoint ? avoid === ep : avoid.includes(ep);
}

function inFlightOf(ep: Endpoint): number {
  return ep.inFlight;
}

function leasedOf(ep: Endpoint): number {
  return ep.conns.leased.size;
}

function describeError(reason: string, err: unknown): string {
  if (err === undefined || err === null) return reason;
  const e = err as NodeJS.ErrnoException;
  return `${reason}: ${e.code ?? ''}${e.code !== undefined && e.message ? ' ' : ''}${e.message ?? String(err)}`.slice(0, 200);
}
