import { readFileSync } from 'node:fs';
const lines = readFileSync(process.argv[2], 'utf8').split('\n');
const runs = []; let cur;
for (const l of lines) {
  let m;
  if ((m = /^(\w+) run(\d+)/.exec(l))) { cur = { b: m[1], r: +m[2] }; runs.push(cur); }
  else if ((m = /^HEAP used (\d+) physical (\d+)/.exec(l))) { cur.used = +m[1]; cur.phys = +m[2]; }
  else if (l.startsWith('{"N"')) { const j = JSON.parse(l); cur.N = j.N; cur.trim = j.afterTrimKiB; cur.conns = j.idleUpstreamConns; }
}
const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
for (const b of [...new Set(runs.map((r) => r.b))]) {
  const heap = [], nat = [];
  for (const r of [1, 2, 3]) {
    const lo = runs.find((x) => x.b === b && x.r === r && x.N === 1000), hi = runs.find((x) => x.b === b && x.r === r && x.N === 2000);
    if (!lo || !hi) continue;
    heap.push((hi.used - lo.used) / 1000); nat.push(((hi.trim - hi.phys) - (lo.trim - lo.phys)) / 1000);
  }
  const tot = heap.map((h, i) => h + nat[i]);
  const f = (a) => `${med(a).toFixed(2)} (${Math.min(...a).toFixed(2)}–${Math.max(...a).toFixed(2)}) [${a.map((x) => x.toFixed(2)).join(', ')}]`;
  console.log(`${b}: heap ${f(heap)}  native ${f(nat)}  total ${f(tot)}; median-of-raw total ${((med(runs.filter(x=>x.b===b&&x.N===2000).map(x=>x.used))-med(runs.filter(x=>x.b===b&&x.N===1000).map(x=>x.used))+med(runs.filter(x=>x.b===b&&x.N===2000).map(x=>x.trim-x.phys))-med(runs.filter(x=>x.b===b&&x.N===1000).map(x=>x.trim-x.phys)))/1000).toFixed(2)}`);
}
