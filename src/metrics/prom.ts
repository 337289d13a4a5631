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

type DefaultMetric = (registry: PromClient.Registry, config: { prefix: string; eventLoopMonitoringPrecision: number }) => void;

/**
 * prom-client's default metric modules we load (its collectDefaultMetrics list, without processCpuTotal), each
 * by a literal path: the bundler (scripts/bundle.mjs) can then include them, where a computed path stays a
 * runtime lookup through node_modules (one per module, ~14 files: enough path work to make V8 optimise node's
 * path functions during startup).
 */
const DEFAULT_METRIC_MODULES: ReadonlyArray<readonly [string, () => DefaultMetric]> = [
  ['processStartTime', () => require('prom-client/lib/metrics/processStartTime.js') as DefaultMetric],
  ['osMemoryHeap', () => require('prom-client/lib/metrics/osMemoryHeap.js') as DefaultMetric],
  ['processOpenFileDescriptors', () => require('prom-client/lib/metrics/processOpenFileDescriptors.js') as DefaultMetric],
  ['processMaxFileDescriptors', () => require('prom-client/lib/metrics/processMaxFileDescriptors.js') as DefaultMetric],
  ['eventLoopLag', () => require('prom-client/lib/metrics/eventLoopLag.js') as DefaultMetric],
  ['processResources', () => require('prom-client/lib/metrics/processResources.js') as DefaultMetric],
  ['processHandles', () => require('prom-client/lib/metrics/processHandles.js') as DefaultMetric],
  ['processRequests', () => require('prom-client/lib/metrics/processRequests.js') as DefaultMetric],
  ['heapSizeAndUsed', () => require('prom-client/lib/metrics/heapSizeAndUsed.js') as DefaultMetric],
  ['heapSpacesSizeAndUsed', () => require('prom-client/lib/metrics/heapSpacesSizeAndUsed.js') as DefaultMetric],
  ['version', () => require('prom-client/lib/metrics/version.js') as DefaultMetric],
  ['gc', () => require('prom-client/lib/metrics/gc.js') as DefaultMetric],
];

/**
 * What prom-client's collectDefaultMetrics registers, the same names and help texts: its own modules, one by
 * one, except the CPU counters, which are ours (prom-client's module loads @opentelemetry/api, ~7 MiB, for
 * exemplars only). processResources needs process.getActiveResourcesInfo (Node >= 17), as in prom-client.
 */
export function collectDefaultMetrics(registry: PromClient.Registry, prefix: string): void {
  const config = { prefix, eventLoopMonitoringPrecision: 10 };
  registerProcessCpu(registry, prefix);
  for (const [name, load] of DEFAULT_METRIC_MODULES) {
    if (name === 'processResources' && typeof process.getActiveResourcesInfo !== 'function') continue;
    load()(registry, config);
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
