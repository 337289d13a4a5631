/**
 * Pure connection state machine. `transition` touches no sockets and no timers; it returns the next state
 * and the effects the pool must carry out.
 *
 * Transition table (anything not listed throws: it would be a bug in the pool):
 *
 *   from        event            to        effects
 *   connecting  connected        leased    -                         (connect made for a waiting lease)
 *   connecting  connected        idle      arm_idle_timers           (connect made for a spare)
 *   connecting  connect_failed   closed    destroy
 *   connecting  fail             closed    destroy                   (shutdown or abort while connecting)
 *   idle        lease            leased    clear_idle_timers
 *   idle        fail             closed    clear_idle_timers, destroy
 *   leased      release          idle      arm_idle_timers           (http keep-alive reuse only)
 *   leased      fail             closed    destroy
 *   closed      fail | release   closed    -                         (first cause wins; late release is a no-op)
 */
import type { AcquireFailure, CloseReason } from '../errors.js';
import { assertNever } from '../errors.js';

export type ConnState =
  /** Socket created, TCP handshake under way. `forLease`: a caller is waiting for exactly this connection. */
  | { readonly state: 'connecting'; readonly since: number; readonly forLease: boolean }
  /** Connected, owned by the pool's idle set, reading (so FIN and errors are seen) but not leased. */
  | { readonly state: 'idle'; readonly idleSince: number }
  /** Owned by exactly one Lease. */
  | { readonly state: 'leased'; readonly leasedAt: number }
  /** Terminal. `closeReason` is the first cause recorded. */
  | { readonly state: 'closed'; readonly closeReason: CloseReason | AcquireFailure; readonly closedAt: number };

export type StateName = ConnState['state'];

export type ConnEvent =
  | { readonly type: 'connected' }
  | { readonly type: 'connect_failed'; readonly reason: AcquireFailure }
  | { readonly type: 'lease' }
  | { readonly type: 'release' }
  | { readonly type: 'fail'; readonly reason: CloseReason };

export type Effect = 'arm_idle_timers' | 'clear_idle_timers' | 'destroy';

export interface Transition {
  readonly next: ConnState;
  readonly effects: readonly Effect[];
}

const NONE: readonly Effect[] = [];

export function transition(from: ConnState, event: ConnEvent, now: number): Transition {
  switch (from.state) {
    case 'connecting':
      switch (event.type) {
        case 'connected':
          return from.forLease
            ? { next: { state: 'leased', leasedAt: now }, effects: NONE }
            : { next: { state: 'idle', idleSince: now }, effects: ['arm_idle_timers'] };
        case 'connect_failed':
        case 'fail':
          return { next: { state: 'closed', closeReason: event.reason, closedAt: now }, effects: ['destroy'] };
        case 'lease':
        case 'release':
          return invalid(from, event);
        default:
          return assertNever(event, 'event');
      }
    case 'idle':
      switch (event.type) {
        case 'lease':
          return { next: { state: 'leased', leasedAt: now }, effects: ['clear_idle_timers'] };
        case 'fail':
          return { next: { state: 'closed', closeReason: event.reason, closedAt: now }, effects: ['clear_idle_timers', 'destroy'] };
        case 'connected':
        case 'connect_failed':
        case 'release':
          return invalid(from, event);
        default:
          return assertNever(event, 'event');
      }
    case 'leased':
      switch (event.type) {
        case 'release':
          return { next: { state: 'idle', idleSince: now }, effects: ['arm_idle_timers'] };
        case 'fail':
          return { next: { state: 'closed', closeReason: event.reason, closedAt: now }, effects: ['destroy'] };
        case 'connected':
        case 'connect_failed':
        case 'lease':
          return invalid(from, event);
        default:
          return assertNever(event, 'event');
      }
    case 'closed':
      switch (event.type) {
        case 'fail':
        case 'release':
          return { next: from, effects: NONE };
        case 'connected':
        case 'connect_failed':
        case 'lease':
          return invalid(from, event);
        default:
          return assertNever(event, 'event');
      }
    default:
      return assertNever(from, 'state');
  }
}

function invalid(from: ConnState, event: ConnEvent): never {
  throw new Error(`invalid pool transition: ${event.type} in state ${from.state}`);
}
