/**
 * Our own prom-client Registry (never the global one), with default process metrics under our prefix. prom-client
 * is loaded through ./prom.js (its modules, not its index: ~11 MiB less RSS).
 */
import type { Registry as PromRegistry } from 'prom-client';
import { Gauge, Registry, collectDefaultMetrics } from './prom.js';
import type { Clock } from '../util/clock.js';
import { realClock } from '../util/clock.js';

export const PREFIX = 'keepalive_sidecar_';

/**
 * How long the default process metrics (CPU, memory, fds, handles, event-loop lag, GC) are reused between
 * scrapes. Collecting them costs ~0.7 ms of CPU (the event-loop-lag percentiles walk an HDR histogram,
 * open fds are a readdir of /proc/self/fd), about twice our own metrics; measured with bench/scrape-overhead
 * at one scrape per 100 ms under load, it cost the proxied traffic ~10% throughput. Prometheus scrapes every
 * 15-60 s, so a 1 s cache is invisible to it and caps that cost whatever the scrape rate. Our own metrics
 * are never cached.
 */
export const PROCESS_METRICS_MAX_AGE_MS = 1000;

/**
 * A Registry whose scrape text is our metrics (always fresh) followed by the default process metrics
 * (from a second, private registry, cached for PROCESS_METRICS_MAX_AGE_MS). Everything else is the plain
 * prom-client Registry: metrics are registered on it and passed around as a Registry.
 */
class SidecarRegistry extends Registry {
  private readonly processRegistry = new Registry();
  private cache: { readonly at: number; readonly text: Promise<string> } | undefined;

  constructor(private readonly clock: Clock) {
    super();
    collectDefaultMetrics(this.processRegistry, PREFIX);
  }

  override async metrics(): Promise<string> {
    const ours = await super.metrics();
    return `${ours}${await this.processMetrics()}`;
  }

  private processMetrics(): Promise<string> {
    const now = this.clock.now();
    if (this.cache === undefined || now - this.cache.at >= PROCESS_METRICS_MAX_AGE_MS) {
      // Concurrent scrapes share one collection (the promise is cached, not only its result).
      this.cache = { at: now, text: this.processRegistry.metrics() };
    }
    return this.cache.text;
  }
}

/**
 * The sidecar's registry: build_info, default process metrics (cached, see above), and whatever the
 * subscribers (createMetrics) register on it. `getMetricsAsJSON()` lists only the latter, not the defaults.
 */
export function createRegistry(version: string, clock: Clock = realClock): PromRegistry {
  const registry = new SidecarRegistry(clock);
  const build = new Gauge({
    name: `${PREFIX}build_info`,
    help: 'Build information; always 1.',
    labelNames: ['version', 'node'] as const,
    registers: [registry],
  });
  build.set({ version, node: process.version }, 1);
  return registry;
}
