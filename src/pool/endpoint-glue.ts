/**
 * What Pool (tcp, HTTP/1) and H2Pool share about a route's endpoints (issue 14), so both treat them alike:
 * the EndpointSet built from the route's upstream config and resolver and wired to the pool, the probe gate
 * and the ejection step. The pools keep what differs: what a connection (or session) is, how idle ones are
 * retired and how connects under way are abandoned.
 */
import type { PoolConfig } from '../config/index.js';
import type { AcquireFailure } from '../errors.js';
import type { Clock } from '../util/clock.js';
import { EndpointSet } from './endpoints.js';
import type { EjectReason, Endpoint, EndpointSetOptions } from './endpoints.js';
import { createResolver } from './resolver.js';
import type { ResolveFn } from './resolver.js';

/** Connect failures after which a caller may try another endpoint (nothing was sent: always safe). */
export const CONNECT_FAILURES: ReadonlySet<AcquireFailure> = new Set<AcquireFailure>(['connect_refused', 'connect_timeout', 'connect_error']);

/** How a pool reacts to its endpoint set. */
export interface EndpointOwner {
  /** Gone from DNS: its idle connections go now (endpoint_removed), busy ones finish. */
  endpointRemoved(ep: Endpoint): void;
  /** The back-off of an ejected endpoint is over (see `shouldProbe`). */
  probeEndpoint(ep: Endpoint): void;
  /** A resolution round succeeded (warm spares may be due). */
  endpointsResolved(): void;
}

export interface RouteEndpointsOptions extends EndpointSetOptions {
  /** Name resolution (tests pass a fake); default: c-ares with upstream.dnsServers or the system's resolv.conf. */
  readonly resolve?: ResolveFn | undefined;
}

/** The route's EndpointSet (its upstream host, port and resolve settings), wired to `owner`. */
export function createRouteEndpoints(config: PoolConfig, clock: Clock, opts: RouteEndpointsOptions, owner: EndpointOwner): EndpointSet {
  const up = config.upstream;
  const { resolve, ...setOpts } = opts;
  const set = new EndpointSet(config.name, up, clock, resolve ?? createResolver({ dnsServers: up.dnsServers }), setOpts);
  set.on('removed', (ep) => owner.endpointRemoved(ep));
  set.on('probe', (ep) => owner.probeEndpoint(ep));
  set.on('resolved', () => owner.endpointsResolved());
  return set;
}

/**
 * Whether a probe connect to ejected `ep` should start now. Not while it is eligible anyway (panic threshold;
 * always so with a single endpoint, e.g. a ClusterIP): then the next ordinary connect to it is the probe, and
 * nothing extra is opened, and the probe is tried again a little later, as when no connection slot is free.
 */
export function shouldProbe(set: EndpointSet, ep: Endpoint, isClosing: boolean, hasSlot: boolean): boolean {
  if (isClosing) return false;
  // Eligible anyway (panic): deferred, not dropped. When the panic ends before an ordinary connect proved the
  // endpoint, nothing else would ever probe it and it would stay ejected.
  if (set.isEligible(ep) || !hasSlot) {
    set.deferProbe(ep);
    return false;
  }
  return true;
}

/**
 * Ejects `ep` (one of its connections died of a dead-peer reason, or a connect to it failed) and says whether
 * its idle connections are to be retired at once (sibling_evicted). After a dead-peer death that follows
 * `siblingEviction` (undefined: only with several endpoints); after a failed connect only with several
 * endpoints: one endpoint is a Service VIP, and a SYN that got no answer says nothing about the pods behind
 * the established connections. The caller also abandons connects under way when `ep` is no longer eligible.
 */
export function ejectEndpoint(set: EndpointSet, ep: Endpoint, reason: EjectReason, err: unknown, isConnectFailure: boolean, siblingEviction: boolean | undefined): { readonly isRetireIdle: boolean; readonly isEligible: boolean } {
  const isMulti = set.isMulti;
  // A single endpoint (a ClusterIP VIP) stays in use whatever happens (panic threshold): marking it ejected
  // would only add a warn, a metric and a doctor warning per dead connection.
  if (isMulti) set.eject(ep, reason, err);
  return { isRetireIdle: isConnectFailure ? isMulti : (siblingEviction ?? isMulti), isEligible: set.isEligible(ep) };
}
