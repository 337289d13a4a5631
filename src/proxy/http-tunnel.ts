/**
 * WebSocket upgrade (RFC 6455 §4, RFC 9110 §7.8) through the sidecar: the handshake goes to the upstream on a
 * pooled connection via its undici Client; on 101 the connection leaves HTTP and both sockets are piped as a
 * byte tunnel (proxy/tcp-pipe.ts), so the tunnel keeps the upstream socket's keepalive/TCP_USER_TIMEOUT and
 * a dead upstream resets the app's connection, exactly as in tcp mode. Any other answer is forwarded as a
 * plain response and the downstream connection is closed.
 */
import http from 'node:http';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Dispatcher } from 'undici';
import type { CloseReason } from '../errors.js';
import { AcquireError } from '../errors.js';
import type { Lease } from '../pool/index.js';
import { acquireFailureStatus } from './http-exchange.js';
import type { ExchangeHost, SidecarErrorReason } from './http-exchange.js';
import { requestHeaders, responseHeaders } from './http-headers.js';
import { pipeTcp, resetSocket } from './tcp-pipe.js';

export interface TunnelHost extends ExchangeHost {
  /** The tunnel was cut because its upstream died (the app's connection was reset). */
  tunnelLost(reason: CloseReason): void;
}

/** Answers on a raw downstream socket (no ServerResponse exists for an upgrade request) and closes it. */
function replyRaw(down: Socket, status: number, reason: SidecarErrorReason): void {
  if (down.destroyed) return;
  const text = status === 503 ? 'Service Unavailable' : 'Bad Gateway';
  const body = `upstream connection failed: ${reason}\n`;
  down.end(`HTTP/1.1 ${status} ${text}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-sidecar-error: ${reason}\r\nconnection: close\r\n\r\n${body}`);
}

/** Proxies a `Upgrade: websocket` request. `down` already has an error listener. */
export function proxyWebSocket(host: TunnelHost, req: IncomingMessage, down: Socket, head: Buffer): void {
  const abort = new AbortController();
  down.once('close', () => abort.abort());
  host.pool.acquire(abort.signal).then(
    (lease) => {
      if (down.destroyed) {
        lease.release();
        return;
      }
      dispatchUpgrade(host, lease, req, down, head);
    },
    (err: unknown) => {
      const reason = err instanceof AcquireError ? err.reason : 'connect_error';
      const status = acquireFailureStatus(reason);
      host.failed(reason, status);
      replyRaw(down, status, reason);
    },
  );
}

function dispatchUpgrade(host: TunnelHost, lease: Lease, req: IncomingMessage, down: Socket, head: Buffer): void {
  let isSettled = false;
  let res: http.ServerResponse | undefined;
  const conn = lease.conn;
  const h1 = lease.h1;
  const handler: Dispatcher.DispatchHandler = {
    onConnect() {},
    onUpgrade(statusCode, rawHeaders, upSocket) {
      if (isSettled) return;
      isSettled = true;
      conn.noteReceived(host.clock.now());
      // The connection leaves HTTP: from here its in-flight accounting is raw bytes (tcp-pipe).
      h1.requestEnded();
      // The 101 goes back as the upstream sent it: here Connection/Upgrade are the point, not hop-by-hop noise.
      const lines = [`HTTP/1.1 ${statusCode} Switching Protocols`];
      const raw = (rawHeaders ?? []) as Array<Buffer | string>;
      for (let i = 0; i < raw.length; i += 2) lines.push(`${raw[i]!.toString()}: ${raw[i + 1]!.toString()}`);
      down.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) (upSocket as Socket).write(head);
      host.completed(statusCode, 0);
      pipeTcp(down, lease, host.clock, (reason) => host.tunnelLost(reason), { early: [], hasEnded: false });
    },
    onHeaders(statusCode, rawHeaders, _resume, statusText) {
      if (isSettled || statusCode < 200) return true;
      conn.noteReceived(host.clock.now());
      // The upstream refused the upgrade: forward its answer as a plain response, then close.
      res = new http.ServerResponse(req);
      res.assignSocket(down);
      res.shouldKeepAlive = false;
      res.on('finish', () => down.end());
      res.writeHead(statusCode, statusText || undefined, responseHeaders(rawHeaders).headers);
      host.completed(statusCode, 0);
      return true;
    },
    onData(chunk) {
      if (res === undefined || isSettled) return true;
      return res.write(chunk);
    },
    onComplete() {
      if (isSettled) return;
      isSettled = true;
      res?.end();
      h1.requestEnded();
      // undici closes a connection after an upgrade request that was answered without 101.
      queueMicrotask(() => lease.release());
    },
    onError(err) {
      if (isSettled) return;
      isSettled = true;
      // The connection decides (first cause wins: its socket 'error' may have reported the same death already).
      const reason = conn.decideReason({ kind: 'error', err });
      h1.requestEnded();
      lease.destroy(reason);
      host.failed(reason, 502);
      if (res !== undefined) resetSocket(down);
      else replyRaw(down, 502, reason);
    },
  };
  down.once('close', () => {
    if (isSettled) return;
    isSettled = true;
    lease.destroy('downstream_closed');
  });
  h1.dispatch(
    { path: req.url ?? '/', method: 'GET', headers: requestHeaders(req.rawHeaders), upgrade: 'websocket', headersTimeout: 0, bodyTimeout: 0 },
    handler,
  );
}
