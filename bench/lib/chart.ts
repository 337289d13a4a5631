/**
 * The picture: request latency against send time around the fault, one panel per target (rows) and variant
 * (columns), rendered with vega-lite + vega in Node to SVG, then to PNG with rsvg-convert (librsvg) when it is
 * installed. Fine requests are thinned (every 8th) to keep the files small; every hit request is drawn.
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
const OUTCOMES = ['fine', `2xx but > ${SLOW_MS} ms`, 'failed (error or non-2xx)'];

export async function renderTimeline(raw: FaultRaw, out: string): Promise<string[]> {
  const values: Array<{ variant: string; target: string; t: number; latency: number; outcome: string; label?: string }> = [];
  let maxT = 0;
  for (const run of raw.runs) {
    for (const [name, t] of Object.entries(run.targets)) {
      let fineSeen = 0;
      // The worst failed request of the panel gets a text label: what the client got, and when.
      let worst: [number, number, string] | undefined;
      let failed = 0;
      for (const r of t.requests) {
        if (/^2\d\d$/.test(r[2])) continue;
        failed++;
        if (worst === undefined || r[1] > worst[1]) worst = r;
      }
      for (const [sent, lat, outcome] of t.requests) {
        const ok = /^2\d\d$/.test(outcome);
        const cat = ok ? (lat <= SLOW_MS ? OUTCOMES[0]! : OUTCOMES[1]!) : OUTCOMES[2]!;
        if (cat === OUTCOMES[0] && fineSeen++ % 8 !== 0) continue;
        const x = (sent - run.faultAtMs) / 1000;
        maxT = Math.max(maxT, x);
        const label = worst !== undefined && sent === worst[0] && lat === worst[1] ? `${failed} failed; worst: ${outcome} after ${(lat / 1000).toFixed(1)} s` : undefined;
        if (label !== undefined) worst = undefined;
        values.push({ variant: run.variant, target: TARGET_LABEL[name as TargetName] ?? name, t: Math.round(x * 100) / 100, latency: Math.max(0.1, lat), outcome: cat, ...(label !== undefined ? { label } : {}) });
      }
    }
  }
  const maxLatency = Math.max(1000, ...values.map((v) => v.latency));
  const spec: vl.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    title: { text: 'Request latency around a silent upstream death (blackhole at t = 0)', anchor: 'start' },
    data: { values },
    facet: {
      row: { field: 'target', type: 'nominal', sort: ORDER.map((n) => TARGET_LABEL[n]), header: { labelOrient: 'top', labelAnchor: 'start', labelAngle: 0, labelFontSize: 12, labelFontWeight: 'bold', title: null } },
      column: { field: 'variant', type: 'nominal', sort: raw.runs.map((r) => r.variant), header: { title: null, labelFontSize: 12 } },
    },
    spec: {
      width: 230,
      height: 90,
      layer: [
        {
          mark: { type: 'point', filled: true, opacity: 0.8 },
          encoding: {
            x: { field: 't', type: 'quantitative', title: 'request sent at (s since blackhole)', scale: { domain: [Math.min(-2, -raw.runs[0]!.faultAtMs / 1000), Math.ceil(maxT)] } },
            y: { field: 'latency', type: 'quantitative', title: 'latency (ms)', scale: { type: 'log', domain: [0.1, maxLatency] }, axis: { values: [0.1, 1, 10, 100, 1000, 10000, 100000].filter((v) => v <= maxLatency), format: '~g' } },
            color: { field: 'outcome', type: 'nominal', scale: { domain: OUTCOMES, range: ['#4c78a8', '#f58518', '#e45756'] }, legend: { orient: 'top', title: null, labelLimit: 400 } },
            size: { condition: { test: `datum.outcome !== '${OUTCOMES[0]}'`, value: 30 }, value: 8 },
          },
        },
        { mark: { type: 'rule', strokeDash: [4, 3], color: '#333' }, encoding: { x: { datum: 0 } } },
        {
          transform: [{ filter: 'isValid(datum.label)' }],
          mark: { type: 'text', align: 'left', dx: 6, dy: 2, fontSize: 10, color: '#b2182b' },
          encoding: { x: { field: 't', type: 'quantitative' }, y: { field: 'latency', type: 'quantitative' }, text: { field: 'label' } },
        },
      ],
    },
  };
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  const svg = await view.toSVG();
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
