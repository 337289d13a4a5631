// node snapshot-diff-by-*.mjs A.heapsnapshot B.heapsnapshot N: per-connection self-size diff (B - A) / N
// node analyze3.mjs a b N : attribute each node to the nearest owner (walking first strong retainers) and diff
import { readFileSync } from 'node:fs';
const OWNERS = new Set(['UpstreamConn', 'H1Driver', 'Client', 'Parser', 'Socket', 'Timeout', 'WritableState', 'ReadableState', 'Lease', 'Endpoint']);
function load(f) {
  const s = JSON.parse(readFileSync(f, 'utf8'));
  const m = s.snapshot.meta; const nf = m.node_fields, ef = m.edge_fields; const types = m.node_types[0], etypes = m.edge_types[0];
  const W = nf.length, EW = ef.length, iT = nf.indexOf('type'), iN = nf.indexOf('name'), iS = nf.indexOf('self_size'), iE = nf.indexOf('edge_count');
  const eT = ef.indexOf('type'), eN = ef.indexOf('name_or_index'), eTo = ef.indexOf('to_node');
  const n = s.nodes, e = s.edges, str = s.strings; const cnt = n.length / W;
  const ret = new Int32Array(cnt).fill(-1), retE = new Int32Array(cnt).fill(-1);
  let ei = 0;
  for (let i = 0; i < cnt; i++) {
    const ec = n[i * W + iE];
    for (let k = 0; k < ec; k++, ei += EW) {
      const et = etypes[e[ei + eT]]; if (et === 'weak' || et === 'shortcut') continue;
      const to = e[ei + eTo] / W;
      // prefer an owner-typed retainer
      const rname = str[n[i * W + iN]];
      if (ret[to] === -1 || (OWNERS.has(rname) && types[n[i*W+iT]]==='object' && !OWNERS.has(str[n[ret[to] * W + iN]]))) { ret[to] = i; retE[to] = ei; }
    }
  }
  const en = (ei) => { const et = etypes[e[ei + eT]]; const v = e[ei + eN]; return et === 'element' ? '[#]' : et === 'hidden' ? '[h]' : String(str[v]).slice(0, 34); };
  const nm = (i) => { const t = types[n[i * W + iT]]; let x = str[n[i * W + iN]]; if (t.includes('string')) x = 'str'; if (t === 'number') x = 'num'; return t === 'object' || t === 'closure' ? x : `${t}:${x}`.slice(0, 40); };
  const agg = new Map();
  for (let i = 0; i < cnt; i++) {
    let p = i, path = [], owner = '?';
    const self = types[n[i*W+iT]] === 'object' ? str[n[i * W + iN]] : '';
    if (OWNERS.has(self)) owner = self + ' (self)';
    else for (let d = 0; d < 10; d++) {
      const r = ret[p]; if (r < 0) break; path.push(en(retE[p]));
      const rn = str[n[r * W + iN]];
      if (OWNERS.has(rn) && types[n[r*W+iT]] === 'object') { owner = rn + '.' + path.reverse().join('.'); break; }
      p = r;
    }
    const k = owner === '?' ? '? ' + nm(i) : owner.split('.').slice(0, 2).join('.') + '  :: ' + nm(i);
    const a = agg.get(k) ?? [0, 0]; a[0]++; a[1] += n[i * W + iS]; agg.set(k, a);
  }
  return agg;
}
const a = load(process.argv[2]), b = load(process.argv[3]); const N = Number(process.argv[4] ?? 1000);
const rows = [];
for (const [k, e] of b) { const o = a.get(k) ?? [0, 0]; rows.push([k, e[0] - o[0], e[1] - o[1]]); }
for (const [k, o] of a) if (!b.has(k)) rows.push([k, -o[0], -o[1]]);
const byOwner = new Map(); for (const r of rows) { const o = r[0].split(/[ .]/)[0]; byOwner.set(o, (byOwner.get(o) ?? 0) + r[2]); }
console.log([...byOwner].sort((x, y) => y[1] - x[1]).filter(x => Math.abs(x[1]) / N > 3).map(([o, v]) => `${o}: ${(v / N).toFixed(0)}`).join('  '));
rows.sort((x, y) => y[2] - x[2]);
for (const r of rows) if (Math.abs(r[2] / N) >= 8) console.log(`${(r[2] / N).toFixed(0).padStart(5)}  ${(r[1] / N).toFixed(2).padStart(5)}  ${r[0]}`);
