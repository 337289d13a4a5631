/**
 * The picture: request latency against send time around the fault, one panel per target (rows) and variant
 * (columns), rendered with vega-lite + vega in Node to SVG, then to PNG with rsvg-convert (librsvg) when it is
 * installed. Every hit request is drawn; fine requests are drawn as one point per 0.5 s (the slowest of them),
 * which keeps the SVG small and still shows each target's latency envelope.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { FaultRaw } from './fault.js';
import { SLOW_MS } from './fault.js';
import type { TargetName } from './peers.js';
import { TARGET_LABEL } from './peers.js';
import { hasCommand, run } from './proc.js';

const ORDER: TargetName[] = ['sidecar-http', 'sidecar-tcp', 'haproxy', 'nginx', 'node-http-proxy', 'direct'];
const OUTCOMES = ['fine (slowest per 0.5 s)', `2xx but > ${SLOW_MS} ms`, 'failed (error or non-2xx)'];
const BIN_S = 0.5;

export async function renderTimeline(raw: FaultRaw, out: string): Promise<string[]> {
  const values: Array<{ variant: string; target: string; t?: number; latency?: number; outcome?: string; label?: string }> = [];
  let maxT = 0;
  for (const run of raw.runs) {
    for (const [name, t] of Object.entries(run.targets)) {
      const fineMax = new Map<number, number>();
      // Each panel says in words what its points show: failures and the worst of them, or the slow ones.
      let worst: [number, number, string] | undefined;
      let failed = 0;
      let slow = 0;
      let slowest = 0;
      for (const r of t.requests) {
        if (/^2\d\d$/.test(r[2])) {
          if (r[1] > SLOW_MS) {
            slow++;
            slowest = Math.max(slowest, r[1]);
          }
          continue;
        }
        failed++;
        if (worst === undefined || r[1] > worst[1]) worst = r;
      }
      const label =
        worst !== undefined
          ? `${failed} failed; worst: ${worst[2]} after ${(worst[1] / 1000).toFixed(1)} s`
          : slow > 0
            ? `0 failed; ${slow} slow, slowest ${(slowest / 1000).toFixed(2)} s`
            : '0 failed, 0 slow';
      values.push({ variant: run.variant, target: TARGET_LABEL[name as TargetName] ?? name, label });
      for (const [sent, lat, outcome] of t.requests) {
        const ok = /^2\d\d$/.test(outcome);
        const cat = ok ? (lat <= SLOW_MS ? OUTCOMES[0]! : OUTCOMES[1]!) : OUTCOMES[2]!;
        const x = (sent - run.faultAtMs) / 1000;
        maxT = Math.max(maxT, x);
        if (cat === OUTCOMES[0]) {
          const bin = Math.floor(x / BIN_S);
          fineMax.set(bin, Math.max(fineMax.get(bin) ?? 0, lat));
          continue;
        }
        values.push({ variant: run.variant, target: TARGET_LABEL[name as TargetName] ?? name, t: Math.round(x * 100) / 100, latency: Math.max(0.1, lat), outcome: cat });
      }
      for (const [bin, lat] of fineMax) {
        values.push({ variant: run.variant, target: TARGET_LABEL[name as TargetName] ?? name, t: (bin + 0.5) * BIN_S, latency: Math.max(0.1, Math.round(lat * 100) / 100), outcome: OUTCOMES[0]! });
      }
    }
  }
  const maxLatency = Math.max(1000, ...values.map((v) => v.latency ?? 0));
  const spec: vl.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    // No per-point ARIA labels: they would make the SVG five times larger.
    config: { aria: false },
    title: { text: 'Request latency around a silent upstream death (blackhole at t = 0)', anchor: 'start' },
    data: { values },
    facet: {
      row: { field: 'target', type: 'nominal', sort: ORDER.map((n) => TARGET_LABEL[n]), header: { labelOrient: 'top', labelAnchor: 'start', labelAngle: 0, labelFontSize: 12, labelFontWeight: 'bold', title: null } },
      column: { field: 'variant', type: 'nominal', sort: raw.runs.map((r) => r.variant), header: { title: null, labelFontSize: 12 } },
    },
    spec: {
      width: 300,
      height: 90,
      layer: [
        {
          transform: [{ filter: 'isValid(datum.outcome)' }],
          mark: { type: 'point', filled: true, opacity: 0.8 },
          encoding: {
            x: { field: 't', type: 'quantitative', title: 'request sent at (s since blackhole)', scale: { domain: [Math.min(-2, -raw.runs[0]!.faultAtMs / 1000), Math.ceil(maxT)] } },
            y: { field: 'latency', type: 'quantitative', title: 'latency (ms)', scale: { type: 'log', domain: [0.1, maxLatency] }, axis: { values: [0.1, 1, 10, 100, 1000, 10000, 100000].filter((v) => v <= maxLatency), format: '~g' } },
            color: { field: 'outcome', type: 'nominal', scale: { domain: OUTCOMES, range: ['#4c78a8', '#f58518', '#e45756'] }, legend: { orient: 'top', title: null, labelLimit: 400 } },
            size: { condition: { test: `datum.outcome !== '${OUTCOMES[0]}'`, value: 30 }, value: 10 },
          },
        },
        { mark: { type: 'rule', strokeDash: [4, 3], color: '#333' }, encoding: { x: { datum: 0 } } },
        {
          transform: [{ filter: 'isValid(datum.label)' }],
          mark: { type: 'text', align: 'right', baseline: 'bottom', fontSize: 10 },
          encoding: { x: { value: 300 }, y: { value: -3 }, text: { field: 'label' }, color: { condition: { test: "indexof(datum.label, '0 failed') === 0", value: '#1a7f37' }, value: '#b2182b' } },
        },
      ],
    },
  };
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  // Geometry to 0.1 px: invisible, and it halves the file.
  const svg = (await view.toSVG()).replace(/ (d|transform)="([^"]*)"/g, (_m, attr: string, v: string) => ` ${attr}="${v.replace(/(\d+\.\d)\d+/g, '$1')}"`);
  view.finalize();
  const files = [join(out, 'timeline.svg')];
  writeFileSync(files[0]!, svg);
  if (hasCommand('rsvg-convert')) {
    const png = join(out, 'timeline.png');
    await run('rsvg-convert', ['-b', 'white', '-o', png, files[0]!]);
    files.push(png);
  }
  return files;
}
