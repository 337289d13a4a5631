/**
 * Loads ffi-rs (the FFI runtime of native.ts; net-keepalive, no longer used at run time, shares it) without its
 * loader's libc probe.
 *
 * ffi-rs's napi-rs loader picks its glibc or musl prebuild by calling `process.report.getReport()`: a full
 * diagnostic report (stacks, every loaded library, libuv handles, environment) built once just to read
 * `header.glibcVersionRuntime`. On an idle sidecar that one call leaves ~2 MiB of RSS behind (node binary
 * pages it touches plus malloc'd report text; bench/idle-rss.ts, 2026-12-02). We answer the same question
 * the way napi-rs's newer loaders do first, from /usr/bin/ldd, and let the loader run its own probe when
 * that file is missing. Whatever we answer, the loader still loads the prebuild it names or fails loudly.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as FfiRs from 'ffi-rs';

const require = createRequire(import.meta.url);

/** true/false when /usr/bin/ldd says which libc this is; undefined when it cannot be read. */
function muslFromLdd(): boolean | undefined {
  try {
    return readFileSync('/usr/bin/ldd', 'latin1').includes('musl');
  } catch {
    return undefined;
  }
}

let ffi: typeof FfiRs | undefined;

/** ffi-rs, loaded once; call before anything that requires it (net-keepalive) so the cached copy is used. */
export function requireFfiRs(): typeof FfiRs {
  if (ffi !== undefined) return ffi;
  const musl = process.platform === 'linux' ? muslFromLdd() : undefined;
  const report = process.report as { getReport: (err?: Error) => object } | undefined;
  const original = report?.getReport;
  if (musl !== undefined && report !== undefined && typeof original === 'function') {
    // The loader reads only header.glibcVersionRuntime (truthy = glibc).
    report.getReport = () => ({ header: { glibcVersionRuntime: musl ? undefined : 'from /usr/bin/ldd' } });
  }
  try {
    ffi = require('ffi-rs') as typeof FfiRs;
  } finally {
    if (report !== undefined && original !== undefined) report.getReport = original;
  }
  return ffi;
}
