// node analyze.mjs a.heapsnapshot b.heapsnapshot  -> per (type,name) count & self size diff, b - a
import { readFileSync } from 'node:fs';
function load(f) {
  const s = JSON.parse(readFileSync(f, 'utf8'));
  const m = s.snapshot.meta; const nf = m.node_fields; const types = m.node_types[0];
  const W = nf.length, iT = nf.indexOf('type'), iN = nf.indexOf('name'), iS = nf.indexOf('self_size');
  const agg = new Map(); const n = s.nodes; const str = s.strings;
  for (let i = 0; i < n.length; i += W) {
    const t = types[n[i + iT]]; let name = str[n[i + iN]];
    if (t === 'string' || t === 'concatenated string' || t === 'sliced string') name = name.length > 40 ? name.slice(0, 40) + '…' : name;
    if (t === 'number') name = 'heap number';
    const k = t + ' | ' + name;
    const e = agg.get(k) ?? [0, 0]; e[0]++; e[1] += n[i + iS]; agg.set(k, e);
  }
  return agg;
}
const a = load(process.argv[2]), b = load(process.argv[3]); const N = Number(process.argv[4] ?? 1000);
const rows = [];
for (const [k, e] of b) { const o = a.get(k) ?? [0, 0]; rows.push([k, e[0] - o[0], e[1] - o[1]]); }
for (const [k, o] of a) if (!b.has(k)) rows.push([k, -o[0], -o[1]]);
rows.sort((x, y) => y[2] - x[2]);
let tot = 0; for (const r of rows) tot += r[2];
console.log(`total self diff ${tot} B = ${(tot / N).toFixed(1)} B/conn`);
// by type
const bt = new Map(); for (const r of rows) { const t = r[0].split(' | ')[0]; bt.set(t, (bt.get(t) ?? 0) + r[2]); }
console.log([...bt].sort((x, y) => y[1] - x[1]).map(([t, v]) => `${t}: ${(v / N).toFixed(1)}`).join('\n'));
console.log('---');
for (const r of rows.slice(0, Number(process.argv[5] ?? 80))) console.log(`${(r[2] / N).toFixed(1).padStart(8)} B/c  cnt/c ${(r[1] / N).toFixed(2).padStart(6)}  ${r[0]}`);
