/**
 * getsockopt(2) and setsockopt(2) (TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT, which net-keepalive set
 * before) through ffi-rs, one FFI runtime: with koffi, used here before, an idle sidecar had ~4 MiB more RSS
 * (bench/idle-rss.ts, 2026-12-02). The price is speed: an ffi-rs call costs ~12-15 µs here against koffi's
 * ~0.1-3 µs, paid 9 times per new upstream connection (3 sets, 6 read-backs) and once per TCP_INFO read
 * (early-retry sweep, /debug/connections).
 *
 * Values and out-parameters live in two blocks from libc malloc, allocated once and never freed, each viewed zero-copy
 * as a Buffer (createExternalBuffer); the calls are synchronous, so one pair serves every call.
 */
import type { Socket } from 'node:net';
import { requireFfiRs } from './ffi-rs.js';

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

/** Largest option value we read (struct tcp_info is 232 bytes on Linux 6.x; more is never asked for). */
const VALUE_BYTES = 256;

interface Binding {
  readonly getsockopt: (args: unknown[]) => { value: number; errnoCode: number };
  readonly setsockopt: (args: unknown[]) => { value: number; errnoCode: number };
  readonly valuePtr: unknown;
  readonly lenPtr: unknown;
  /** Zero-copy views of the two native blocks. */
  readonly value: Buffer;
  readonly len: Buffer;
}

let binding: Binding | undefined;

function bind(): Binding {
  if (binding !== undefined) return binding;
  // ffi-rs is a CommonJS package: required, not imported (no ESM named-export scan of its source).
  const ffi = requireFfiRs();
  const { DataType } = ffi;
  // path '' is dlopen(NULL): the process's own symbols, libc included (net-keepalive opens it the same way).
  ffi.open({ library: 'keepalive_sidecar_libc', path: '' });
  const fns = ffi.define({
    getsockopt: {
      library: 'keepalive_sidecar_libc',
      retType: DataType.I32,
      paramsType: [DataType.I32, DataType.I32, DataType.I32, DataType.External, DataType.External],
      errno: true,
    },
    setsockopt: {
      library: 'keepalive_sidecar_libc',
      retType: DataType.I32,
      paramsType: [DataType.I32, DataType.I32, DataType.I32, DataType.External, DataType.I32],
      errno: true,
    },
    malloc: { library: 'keepalive_sidecar_libc', retType: DataType.External, paramsType: [DataType.U64] },
  });
  const valuePtr = fns.malloc([VALUE_BYTES]);
  const lenPtr = fns.malloc([8]);
  binding = {
    getsockopt: fns.getsockopt as unknown as Binding['getsockopt'],
    setsockopt: fns.setsockopt as unknown as Binding['setsockopt'],
    valuePtr,
    lenPtr,
    value: ffi.createExternalBuffer(valuePtr, VALUE_BYTES),
    len: ffi.createExternalBuffer(lenPtr, 4),
  };
  return binding;
}

/** The socket's file descriptor, or undefined once it is closed (or before it is open). */
export function socketFd(socket: Socket): number | undefined {
  const handle = (socket as unknown as { _handle?: { fd?: number } | null })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** getsockopt into the shared value block; returns the bytes filled, or throws with the errno. */
function getsockopt(fd: number, level: number, name: number, bytes: number): number {
  const b = bind();
  b.len.writeUInt32LE(bytes, 0);
  const { value: rc, errnoCode } = b.getsockopt([fd, level, name, b.valuePtr, b.lenPtr]);
  if (rc !== 0) throw new Error(`getsockopt(${level}, ${name}) failed: errno ${errnoCode}`);
  return b.len.readUInt32LE(0);
}

/**
 * setsockopt(2) of an int option, the value passed in the same preallocated block. Replaces net-keepalive's
 * setters, which call ffi-rs `createPointer` for the value on every call and never free it: ~0.24 KiB of
 * native memory lost per call, three calls per new upstream connection, for the life of the process
 * (bench/results/2026-12-02-conn-mem2). Throws on failure, like the getter.
 */
export function setIntSockopt(fd: number, level: number, name: number, value: number): void {
  const b = bind();
  b.value.writeInt32LE(value, 0);
  const { value: rc, errnoCode } = b.setsockopt([fd, level, name, b.valuePtr, 4]);
  if (rc !== 0) throw new Error(`setsockopt(${level}, ${name}) failed: errno ${errnoCode}`);
}

/** Reads an int socket option. Throws with the errno on failure. */
export function getIntSockopt(fd: number, level: number, name: number): number {
  getsockopt(fd, level, name, 4);
  return bind().value.readInt32LE(0);
}

/**
 * Reads struct tcp_info (linux/tcp.h) into `buf` (at least 104 bytes). Returns the number of bytes the
 * kernel filled, or -1 on failure (e.g. the fd was closed).
 */
export function getTcpInfoRaw(fd: number, buf: Buffer): number {
  let filled: number;
  try {
    filled = getsockopt(fd, IPPROTO_TCP, TCP_INFO, Math.min(buf.length, VALUE_BYTES));
  } catch {
    return -1;
  }
  bind().value.copy(buf, 0, 0, filled);
  return filled;
}
