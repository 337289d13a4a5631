import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import type { CloseReason } from '../errors.js';
import { UpstreamConn } from './conn.js';
import { Endpoint } from './endpoints.js';
import type { CloseCause, ConnOwner } from './conn.js';
import { H1Driver } from './h1-driver.js';

// An unconnected net.Socket: a real object, no network. Only decideReason is exercised.
const owner: ConnOwner = {
  connConnected: () => {},
  connConnectFailed: () => {},
  connEnded: () => {},
  connClosed: () => {},
  connFailed: () => {},
};

function errno(code: string): Error {
  return Object.assign(new Error(code), { code });
}

function h1Conn(userTimeoutMs = 2000): { conn: UpstreamConn; h1: H1Driver } {
  const socket = new net.Socket();
  const h1 = new H1Driver(socket, new URL('http://127.0.0.1:1'), 1000);
  const conn = new UpstreamConn(1, 'r', socket, 0, true, owner, userTimeoutMs, h1, new Endpoint('127.0.0.1', 1, 4, 0));
  return { conn, h1 };
}

function decideAll(conn: UpstreamConn, causes: CloseCause[]): CloseReason[] {
  return causes.map((c) => conn.decideReason(c));
}

describe('UpstreamConn.decideReason: the one place a close reason is decided', () => {
  it('the same death gives the same reason whichever event reports it first (socket ETIMEDOUT vs undici onError)', () => {
    // A request written, no response: the kernel's ETIMEDOUT (TCP_USER_TIMEOUT) reaches the socket listener
    // and undici's onError (with the same error, or undici's own wrapper).
    const etimedout = errno('ETIMEDOUT');
    const undiciWrapper = Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' });
    const a = h1Conn();
    a.h1.hasRequestInFlight = true;
    a.h1.isAwaitingHead = true;
    const socketFirst = decideAll(a.conn, [{ kind: 'error', err: etimedout }, { kind: 'error', err: undiciWrapper }]);
    const b = h1Conn();
    b.h1.hasRequestInFlight = true;
    b.h1.isAwaitingHead = true;
    const driverFirst = decideAll(b.conn, [{ kind: 'error', err: etimedout }, { kind: 'error', err: etimedout }]);
    assert.deepEqual(socketFirst, ['user_timeout', 'user_timeout']);
    assert.deepEqual(driverFirst, ['user_timeout', 'user_timeout']);
  });

  it('in-flight comes from the driver: the same ETIMEDOUT with no request outstanding is keepalive_timeout', () => {
    const { conn } = h1Conn();
    assert.equal(conn.decideReason({ kind: 'error', err: errno('ETIMEDOUT') }), 'keepalive_timeout');
  });

  it('a death after the response head arrived (mid-body) is keepalive_timeout: nothing of ours awaited an answer', () => {
    const { conn, h1 } = h1Conn();
    h1.hasRequestInFlight = true;
    h1.isAwaitingHead = true;
    h1.headReceived();
    assert.equal(conn.decideReason({ kind: 'error', err: errno('ETIMEDOUT') }), 'keepalive_timeout');
  });

  it('RST then the driver noticing, and the reverse order of reports, both give peer_reset', () => {
    const rst = errno('ECONNRESET');
    const a = h1Conn();
    a.h1.hasRequestInFlight = true;
    assert.deepEqual(decideAll(a.conn, [{ kind: 'error', err: rst }, { kind: 'local', reason: 'other' }]), ['peer_reset', 'peer_reset']);
    const b = h1Conn();
    b.h1.hasRequestInFlight = true;
    // The driver's onError arrives with the same errno before anything else was reported.
    assert.deepEqual(decideAll(b.conn, [{ kind: 'error', err: rst }, { kind: 'error', err: rst }, { kind: 'end' }]), ['peer_reset', 'peer_reset', 'peer_reset']);
  });

  it('first cause wins and is never revised (timer, then error, then end)', () => {
    const { conn } = h1Conn();
    assert.deepEqual(
      decideAll(conn, [{ kind: 'local', reason: 'idle_evicted' }, { kind: 'error', err: errno('ECONNRESET') }, { kind: 'end' }]),
      ['idle_evicted', 'idle_evicted', 'idle_evicted'],
    );
    assert.equal(conn.closeReason, 'idle_evicted');
  });

  it('undici framing error with no request outstanding (bytes while idle) is protocol_error', () => {
    const { conn } = h1Conn();
    const bad = Object.assign(new Error('bad response'), { code: 'UND_ERR_SOCKET' });
    assert.equal(conn.decideReason({ kind: 'error', err: bad }), 'protocol_error');
  });

  it('undici "other side closed" with a request outstanding is peer_closed; end after a local FIN is downstream_closed', () => {
    const a = h1Conn();
    a.h1.hasRequestInFlight = true;
    assert.equal(a.conn.decideReason({ kind: 'error', err: Object.assign(new Error('x'), { code: 'UND_ERR_SOCKET' }) }), 'peer_closed');
    const b = h1Conn();
    b.conn.hasLocalEnded = true;
    assert.equal(b.conn.decideReason({ kind: 'end' }), 'downstream_closed');
  });

  it('raw (tcp) in-flight is bytes sent since the last byte received', () => {
    const socket = new net.Socket();
    const conn = new UpstreamConn(2, 'r', socket, 0, true, owner, 2000, undefined, new Endpoint('127.0.0.1', 1, 4, 0));
    conn.bytesSent = 10;
    assert.equal(conn.hasDataInFlight, true);
    conn.noteReceived(5);
    assert.equal(conn.hasDataInFlight, false);
    conn.bytesSent = 11;
    assert.equal(conn.decideReason({ kind: 'error', err: errno('ETIMEDOUT') }), 'user_timeout');
  });
});

describe('one decision point', () => {
  it('no code outside pool/conn and liveness/classify classifies an error or works a reason out from closeReason', () => {
    // Reads the compiled tree this test lives in (dist/src): no socket, no network.
    const root = join(dirname(fileURLToPath(import.meta.url)), '..');
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.js') && !e.name.endsWith('.test.js')) {
          const rel = relative(root, p);
          if (rel === join('pool', 'conn.js') || rel === join('liveness', 'classify.js')) continue;
          const text = readFileSync(p, 'utf8');
          if (/classifyError\(|closeReason \?\?|recordReason/.test(text)) offenders.push(rel);
        }
      }
    };
    walk(root);
    assert.deepEqual(offenders, []);
  });
});
