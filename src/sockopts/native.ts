/**
 * getsockopt(2) through koffi (a maintained FFI library). net-keepalive sets TCP_KEEPINTVL, TCP_KEEPCNT and
 * TCP_USER_TIMEOUT; reading back goes through this one binding (about 1 µs per call here), which also
 * reads TCP_INFO.
 */
import type { Socket } from 'node:net';
import koffi from 'koffi';

// Constants from <sys/socket.h>, <netinet/tcp.h> (Linux).
export const SOL_SOCKET = 1;
export const SO_KEEPALIVE = 9;
export const IPPROTO_TCP = 6;
export const TCP_NODELAY = 1;
export const TCP_KEEPIDLE = 4;
export const TCP_KEEPINTVL = 5;
export const TCP_KEEPCNT = 6;
export const TCP_INFO = 11;
export const TCP_USER_TIMEOUT = 18;

type GetsockoptFn = (fd: number, level: number, name: number, val: Buffer, len: number[]) => number;

let getsockoptFn: GetsockoptFn | undefined;

function binding(): GetsockoptFn {
  if (getsockoptFn === undefined) {
    const libc = koffi.load('libc.so.6');
    getsockoptFn = libc.func(
      'int getsockopt(int fd, int level, int name, _Out_ uint8_t *val, _Inout_ uint32_t *len)',
    ) as GetsockoptFn;
  }
  return getsockoptFn;
}

/** The socket's file descriptor, or undefined once it is closed (or before it is open). */
export function socketFd(socket: Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: { fd?: number } | null })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

const intBuf = Buffer.alloc(4);
const intLen = [4];

/** Reads an int socket option. Throws with the errno on failure. */
export function getIntSockopt(fd: number, level: number, name: number): number {
  intLen[0] = 4;
  const rc = binding()(fd, level, name, intBuf, intLen);
  if (rc !== 0) throw new Error(`getsockopt(${level}, ${name}) failed: errno ${koffi.errno()}`);
  return intBuf.readInt32LE(0);
}

/**
 * Reads struct tcp_info (linux/tcp.h) into `buf` (at least 104 bytes). Returns the number of bytes the
 * kernel filled, or -1 on failure (e.g. the fd was closed).
 */
export function getTcpInfoRaw(fd: number, buf: Buffer): number {
  const len = [buf.length];
  const rc = binding()(fd, IPPROTO_TCP, TCP_INFO, buf, len);
  return rc === 0 ? (len[0] ?? 0) : -1;
}
