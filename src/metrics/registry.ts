/** Our own prom-client Registry (never the global one), with default process metrics under our prefix. */
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export const PREFIX = 'keepalive_sidecar_';

export function createRegistry(version: string): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: PREFIX });
  const build = new Gauge({
    name: `${PREFIX}build_info`,
    help: 'Build information; always 1.',
    labelNames: ['version', 'node'] as const,
    registers: [registry],
  });
  build.set({ version, node: process.version }, 1);
  return registry;
}
