/**
 * prom-client's metric classes and default process metrics, loaded from its own modules instead of its index.
 * The index also loads the Pushgateway (node:http, https -> tls -> crypto, zlib), the cluster aggregator
 * (node:cluster -> child_process, dgram), Summary (tdigest, bintrees) and, through the process CPU metric,
 * @opentelemetry/api (63 files, for exemplars we do not use): measured +11.7 MiB RSS against +0.8 MiB for
 * Registry/Counter/Gauge/Histogram alone (bench/idle-rss.ts, 2026-12-02). The types still come from the
 * package's index (type-only imports, erased at compile time); the classes are the very same (the index
 * re-exports these modules), so a metric from either path registers on either.
 */
import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';

const require = createRequire(import.meta.url);

export const Registry = require('prom-client/lib/registry.js') as typeof PromClient.Registry;
export const Counter = require('prom-client/lib/counter.js') as typeof PromClient.Counter;
export const Gauge = require('prom-client/lib/gauge.js') as typeof PromClient.Gauge;
export const Histogram = require('prom-client/lib/histogram.js') as typeof PromClient.Histogram;
export type Registry = PromClient.Registry;
export type Counter<T extends string = string> = PromClient.Counter<T>;
export type Gauge<T extends string = string> = PromClient.Gauge<T>;
export type Histogram<T extends string = string> = PromClient.Histogram<T>;

/** prom-client's default metric modules we load (its collectDefaultMetrics list, without processCpuTotal). */
const DEFAULT_METRIC_MODULES = [
  'processStartTime', 'osMemoryHeap', 'processOpenFileDescriptors', 'processMaxFileDescriptors', 'eventLoopLag',
  'processResources', 'processHandles', 'processRequests', 'heapSizeAndUsed', 'heapSpacesSizeAndUsed', 'version',
  'gc',
] as const;

type DefaultMetric = (registry: PromClient.Registry, config: { prefix: string; eventLoopMonitoringPrecision: number }) => void;

/**
 * What prom-client's collectDefaultMetrics registers, the same names and help texts: its own modules, one by
 * one, except the CPU counters, which are ours (prom-client's module loads @opentelemetry/api, ~7 MiB, for
 * exemplars only). processResources needs process.getActiveResourcesInfo (Node >= 17), as in prom-client.
 */
export function collectDefaultMetrics(registry: PromClient.Registry, prefix: string): void {
  const config = { prefix, eventLoopMonitoringPrecision: 10 };
  registerProcessCpu(registry, prefix);
  for (const name of DEFAULT_METRIC_MODULES) {
    if (name === 'processResources' && typeof process.getActiveResourcesInfo !== 'function') continue;
    (require(`prom-client/lib/metrics/${name}.js`) as DefaultMetric)(registry, config);
  }
}

/** process_cpu_{user,system,}_seconds_total as prom-client's processCpuTotal writes them (no exemplars). */
function registerProcessCpu(registry: PromClient.Registry, prefix: string): void {
  let last = process.cpuUsage();
  const registers = [registry];
  const user = new Counter({
    name: `${prefix}process_cpu_user_seconds_total`,
    help: 'Total user CPU time spent in seconds.',
    registers,
    // This one metric's collect sets all three, as in prom-client.
    collect() {
      const now = process.cpuUsage();
      const userUs = now.user - last.user;
      const systemUs = now.system - last.system;
      last = now;
      user.inc(userUs / 1e6);
      system.inc(systemUs / 1e6);
      total.inc((userUs + systemUs) / 1e6);
    },
  });
  const system = new Counter({ name: `${prefix}process_cpu_system_seconds_total`, help: 'Total system CPU time spent in seconds.', registers });
  const total = new Counter({ name: `${prefix}process_cpu_seconds_total`, help: 'Total user and system CPU time spent in seconds.', registers });
}
