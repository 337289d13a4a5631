/**
 * `doctor`'s reasoning, pure: kernel sysctls + configured routes + the self-check result + what a running
 * sidecar reports -> plain-language text, problems (exit non-zero) and warnings (printed, exit 0).
 * The timings come from liveness/detection-time.ts, which cites the kernel code they model.
 */
import type { ConnectionView, EndpointsReport } from '../admin/index.js';
import type { RouteConfig } from '../config/index.js';
import { formatDuration, idleDetectionMs, inFlightDetectionMs, retransmitTimeoutMs, TCP_RTO_MAX_MS, TCP_RTO_MIN_MS } from '../liveness/index.js';
import { expectedSockopts } from '../sockopts/index.js';
import type { EffectiveSockopts } from '../sockopts/index.js';
import type { KernelReading } from './kernel.js';

/** What a running sidecar's admin port said, or why it said nothing. */
export type AdminProbe =
  | {
      readonly url: string;
      readonly isExplicit: boolean;
      readonly ok: true;
      readonly isReady: boolean;
      readonly connections: readonly ConnectionView[];
      readonly total?: number;
      /** Per route, its endpoints (/debug/endpoints; absent from a sidecar that predates issue 14). */
      readonly endpoints?: EndpointsReport['routes'];
    }
  | { readonly url: string; readonly isExplicit: boolean; readonly ok: false; readonly error: string };

export interface DoctorInput {
  readonly procRoot: string;
  readonly kernel: KernelReading;
  /** Where the routes came from, in words ("config.yaml", "the defaults of a tcp route"). */
  readonly configSource: string;
  readonly routes: readonly RouteConfig[];
  /** undefined when the self-check could not run; else every failure (empty = all options can be set). */
  readonly sockoptProblems: readonly string[] | undefined;
  readonly admin: AdminProbe | undefined;
}

export interface DoctorReport {
  readonly text: string;
  readonly problems: readonly string[];
  readonly warnings: readonly string[];
}

const ms = (n: number): string => formatDuration(n);

function sockoptsSummary(o: EffectiveSockopts): string {
  const ka = o.keepAlive ? `keepalive ${o.keepIdleSec} s idle / ${o.keepIntvlSec} s interval / ${o.keepCnt} probes` : 'keepalive off';
  return `${ka}, TCP_USER_TIMEOUT ${o.userTimeoutMs > 0 ? `${o.userTimeoutMs} ms` : 'off'}`;
}

/** Builds the report. Pure: no I/O, no clock. */
export function diagnose(input: DoctorInput): DoctorReport {
  const out: string[] = [];
  const problems: string[] = [];
  const warnings: string[] = [];
  const k = input.kernel.settings;

  out.push('keepalive-sidecar doctor', '');
  out.push(`Kernel TCP settings (${input.procRoot}/sys/net/ipv4; per network namespace, so inside a pod these are the pod's):`);
  const r = input.kernel.isRead;
  const mark = (isRead: boolean): string => (isRead ? '' : ' (unreadable: Linux default assumed)');
  out.push(
    `  tcp_keepalive_time = ${k.keepaliveTimeSec} s${mark(r.keepaliveTimeSec)}, tcp_keepalive_intvl = ${k.keepaliveIntvlSec} s${mark(r.keepaliveIntvlSec)}, ` +
      `tcp_keepalive_probes = ${k.keepaliveProbes}${mark(r.keepaliveProbes)}, tcp_retries2 = ${k.retries2}${mark(r.retries2)}`,
  );
  for (const p of input.kernel.problems) problems.push(`kernel settings: ${p}`);
  out.push('');

  const kernelIdle = idleDetectionMs({ isKeepaliveOn: true, idleSec: k.keepaliveTimeSec, intvlSec: k.keepaliveIntvlSec, probes: k.keepaliveProbes, userTimeoutMs: 0 });
  const kernelInFlight = retransmitTimeoutMs(k.retries2);
  out.push('Without the sidecar (an app socket with kernel defaults), when the peer dies silently (node crash, partition; no FIN, no RST):');
  out.push('  - idle connection: never noticed. Sockets get no keepalive unless the app sets SO_KEEPALIVE; the next');
  out.push('    request is written into a dead connection and hangs (see the next line).');
  out.push(`    With SO_KEEPALIVE and these sysctls: noticed after ${ms(kernelIdle)} (${k.keepaliveTimeSec} s idle + ${k.keepaliveProbes} probes x ${k.keepaliveIntvlSec} s).`);
  out.push(`  - data in flight: the write hangs for about ${ms(kernelInFlight)}: ${k.retries2} retransmissions (tcp_retries2), the`);
  out.push(`    timeout starting at ${TCP_RTO_MIN_MS} ms and doubling up to ${TCP_RTO_MAX_MS / 1000} s (tcp_model_timeout, net/ipv4/tcp_timer.c;`);
  out.push('    ip-sysctl.rst: "the default value of 15 yields a hypothetical timeout of 924.6 seconds"). Keepalive does not');
  out.push('    help here: the kernel sends no keepalive probe while data is unacknowledged.');
  out.push('');

  out.push(`With the sidecar (configuration: ${input.configSource}):`);
  if (input.routes.length === 0) out.push('  no routes configured.');
  for (const route of input.routes) {
    const o = expectedSockopts(route.keepalive);
    const idle = idleDetectionMs({ isKeepaliveOn: true, idleSec: o.keepIdleSec, intvlSec: o.keepIntvlSec, probes: o.keepCnt, userTimeoutMs: o.userTimeoutMs });
    const inFlight = inFlightDetectionMs(o, k.retries2);
    out.push(`  route "${route.name}" (${route.mode} ${route.listen.host}:${route.listen.port} -> ${route.upstream.host}:${route.upstream.port}): ${sockoptsSummary(o)}`);
    const how = o.userTimeoutMs > 0
      ? `first probe after ${o.keepIdleSec} s of silence, then one every ${o.keepIntvlSec} s; dead at the first\n    probe tick once ${o.userTimeoutMs} ms have passed with no answer, the probe count being ignored with TCP_USER_TIMEOUT`
      : `first probe after ${o.keepIdleSec} s of silence, then ${o.keepCnt} probes ${o.keepIntvlSec} s apart`;
    out.push(`  - idle: declared dead at most ${ms(idle)} after the last byte received (${how}).`);
    if (o.userTimeoutMs > 0) {
      out.push(`  - data in flight: declared dead ${ms(inFlight)} after the first unacknowledged write (TCP_USER_TIMEOUT).`);
    } else {
      out.push(`  - data in flight: TCP_USER_TIMEOUT is off, so the kernel's ${ms(inFlight)} (tcp_retries2) applies.`);
      warnings.push(`route "${route.name}": keepalive.userTimeoutMs is 0, so a write to a dead peer hangs for ${ms(inFlight)}`);
    }
    out.push(`    Either way the app's connection is reset at that moment (tcp mode), so the app reconnects.`);
  }
  out.push('');

  out.push('Socket options (applied to a loopback socket pair and read back with getsockopt):');
  if (input.sockoptProblems === undefined) {
    out.push('  not checked.');
  } else if (input.sockoptProblems.length === 0) {
    out.push('  OK: nodelay, SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT can be set as configured.');
  } else {
    for (const p of input.sockoptProblems) {
      out.push(`  FAILED ${p}`);
      problems.push(`socket option cannot be set: ${p}`);
    }
  }
  out.push('');

  const a = input.admin;
  if (a === undefined) {
    out.push('Running sidecar: none asked (give --admin-url URL).');
  } else if (!a.ok) {
    out.push(`Running sidecar at ${a.url}: no answer (${a.error}).`);
    if (a.isExplicit) problems.push(`admin URL ${a.url} did not answer: ${a.error}`);
  } else {
    const total = a.total ?? a.connections.length;
    const listed = total > a.connections.length ? ` (first ${a.connections.length} listed)` : '';
    out.push(`Running sidecar at ${a.url}: ${a.isReady ? 'ready' : 'NOT ready'}, ${total} upstream socket(s)${listed}.`);
    if (!a.isReady) warnings.push(`the sidecar at ${a.url} reports not ready (starting or draining)`);
    for (const r of a.endpoints ?? []) out.push(...describeEndpoints(r, warnings));
    for (const c of a.connections) out.push(...describeSocket(c, problems, warnings));
  }
  out.push('');

  if (problems.length === 0) out.push(`Result: no problems found${warnings.length > 0 ? `, ${warnings.length} warning(s)` : ''}.`);
  else out.push(`Result: ${problems.length} problem(s) found.`);
  for (const p of problems) out.push(`  PROBLEM: ${p}`);
  for (const w of warnings) out.push(`  warning: ${w}`);
  return { text: `${out.join('\n')}\n`, problems, warnings };
}

function describeSocket(c: ConnectionView, problems: string[], warnings: string[]): string[] {
  const lines: string[] = [];
  const who = `${c.route} #${c.id}`;
  lines.push(`  ${who} ${c.state} ${c.local ?? '?'} -> ${c.remote ?? '?'}, age ${ms(c.ageMs)}, last byte received ${ms(c.idleMs)} ago, ${c.bytesWritten} B sent / ${c.bytesRead} B received`);
  if (c.sockopts !== null) {
    const as = c.isSockoptsAsConfigured === true ? 'as configured' : `CONFIGURED ${sockoptsSummary(c.configured)}`;
    lines.push(`      read back: ${sockoptsSummary(c.sockopts)} (${as})`);
    if (c.isSockoptsAsConfigured === false) problems.push(`${who}: socket options read back differ from the configuration`);
  }
  const t = c.tcpInfo;
  if (t !== null) {
    lines.push(
      `      tcp: ${t.state}, rtt ${(t.rttUs / 1000).toFixed(2)} ms (var ${(t.rttvarUs / 1000).toFixed(2)}), rto ${Math.round(t.rtoUs / 1000)} ms, ` +
        `unacked ${t.unacked}, retransmits ${t.retransmits} (total ${t.totalRetrans}), probes out ${t.probes}, lost ${t.lost}, ` +
        `last data received ${ms(t.lastDataRecvMs)} ago, last ACK ${ms(t.lastAckRecvMs)} ago`,
    );
    if (t.state !== 'established') warnings.push(`${who}: TCP state ${t.state}`);
    if (t.probes > 0 || t.retransmits > 0) warnings.push(`${who}: the peer is not answering right now (probes out ${t.probes}, retransmits ${t.retransmits})`);
  }
  const timers: string[] = [];
  if (c.timers.deadIfSilentWithinMs !== null) timers.push(`declared dead within ${ms(c.timers.deadIfSilentWithinMs)} if the peer stays silent`);
  if (c.timers.maxAgeInMs !== null) timers.push(`max age reached in ${ms(Math.max(0, c.timers.maxAgeInMs))}`);
  if (timers.length > 0) lines.push(`      timers: ${timers.join('; ')}`);
  return lines;
}

/** One route's endpoints: a line per address with its state and load; ejected ones and failed resolution warn. */
function describeEndpoints(r: EndpointsReport['routes'][number], warnings: string[]): string[] {
  const lines: string[] = [];
  const resolved = r.lastResolvedMsAgo !== null ? `, resolved ${ms(r.lastResolvedMsAgo)} ago` : '';
  lines.push(`  route "${r.route}" endpoints of ${r.host}:${r.port} (resolve ${r.resolve}${resolved}): ${r.endpoints.length}${r.isPanic ? ' (PANIC: fewer than half active, all used)' : ''}`);
  if (r.lastResolveError !== null) {
    lines.push(`      last resolution failed: ${r.lastResolveError}`);
    warnings.push(`route "${r.route}": resolving ${r.host} fails (${r.lastResolveError})${r.endpoints.length > 0 ? '; the last good set keeps serving' : '; requests fail with resolve_failed'}`);
  }
  for (const e of r.endpoints) {
    const ej = e.ejectedForMs !== null ? `, back in ${ms(e.ejectedForMs)} after a probe` : '';
    const err = e.lastError !== null ? `, last error ${e.lastError}` : '';
    const warm = e.weight < 1 ? `, slow start ${Math.round(e.weight * 100)} %` : '';
    lines.push(`    ${e.address}:${e.port} ${e.state}: ${e.connections} connection(s), ${e.inFlight} in flight, ${e.ejections} ejection(s)${warm}${ej}${err}`);
    if (e.state === 'ejected') warnings.push(`route "${r.route}": endpoint ${e.address}:${e.port} is ejected (${e.lastError ?? 'dead peer'})`);
  }
  return lines;
}
