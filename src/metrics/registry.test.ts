import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Counter, Registry, collectDefaultMetrics } from 'prom-client';
import type { Clock } from '../util/clock.js';
import { createRegistry, PREFIX, PROCESS_METRICS_MAX_AGE_MS } from './registry.js';

function fakeClock(): Clock & { advance(ms: number): void } {
  let t = 0;
  return { now: () => t, setTimeout: () => ({ clear() {} }), advance: (ms) => (t += ms) };
}

/** Value of the first sample line starting with `name` (with or without labels). */
function value(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  assert.ok(line, `${name} in the scrape`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** Burns CPU until process.cpuUsage() moved by at least 20 ms, so the CPU counter must change. */
function burnCpu(): void {
  const start = process.cpuUsage();
  for (let i = 0; i < 1e9; i++) {
    const d = process.cpuUsage(start);
    if (d.user + d.system > 20_000) return;
  }
}

describe('createRegistry', () => {
  it('serves our metrics fresh on every scrape and caches the default process metrics for 1 s', async () => {
    const clock = fakeClock();
    const registry = createRegistry('1.2.3', clock);
    const ours = new Counter({ name: `${PREFIX}test_total`, help: 'test', registers: [registry] });
    const cpu = `${PREFIX}process_cpu_seconds_total`;

    const first = await registry.metrics();
    assert.match(first, /^keepalive_sidecar_build_info\{version="1\.2\.3",node="v\d+/m);
    ours.inc();
    burnCpu();
    const second = await registry.metrics();
    assert.equal(value(second, `${PREFIX}test_total`), 1, 'our counter is fresh');
    assert.equal(value(second, cpu), value(first, cpu), 'process metrics come from the cache');

    clock.advance(PROCESS_METRICS_MAX_AGE_MS);
    const third = await registry.metrics();
    assert.ok(value(third, cpu) > value(first, cpu), 'refreshed after the max age');
  });

  it('every default metric carries our prefix and appears once', async () => {
    const text = await createRegistry('x', fakeClock()).metrics();
    const types = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!);
    assert.ok(types.length > 20);
    assert.ok(types.every((n) => n.startsWith(PREFIX)), types.filter((n) => !n.startsWith(PREFIX)).join(', '));
    assert.equal(new Set(types).size, types.length, 'no family twice');
  });

  it("registers the same default metric families, types and help texts as prom-client's collectDefaultMetrics", async () => {
    const families = (text: string): string[] => [...text.matchAll(/^# (?:TYPE|HELP) .*$/gm)].map((m) => m[0]).sort();
    const reference = new Registry();
    collectDefaultMetrics({ register: reference, prefix: PREFIX });
    const ours = (await createRegistry('x', fakeClock()).metrics()).split('\n').filter((l) => !l.includes(`${PREFIX}build_info`)).join('\n');
    assert.deepEqual(families(ours), families(await reference.metrics()));
  });
});
