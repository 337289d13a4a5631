// node --expose-gc bench/results/2026-12-02-conn-mem2/ffi-setsockopt-leak.mjs net-keepalive|setIntSockopt   (repository root, after npm run build)
// native (RSS after gc + malloc_trim minus V8 heap physical) after 0, 30k, 60k, 90k calls of: the three
// net-keepalive setters (main's applySockopts path) vs the three through native.ts setIntSockopt (this branch)
import net from 'node:net';
import v8 from 'node:v8';
import { createRequire } from 'node:module';
import { setIntSockopt, socketFd } from '../../../dist/src/sockopts/native.js';
const require = createRequire(import.meta.url);
const ffi = require('ffi-rs');
const nk = require('net-keepalive');
ffi.open({ library: 'tl', path: '' });
const trim = ffi.define({ malloc_trim: { library: 'tl', retType: ffi.DataType.I32, paramsType: [ffi.DataType.U64] } }).malloc_trim;
const srv = net.createServer(() => {}).listen(0, '127.0.0.1');
await new Promise((r) => srv.on('listening', r));
const s = net.connect(srv.address().port, '127.0.0.1'); await new Promise((r) => s.on('connect', r));
const fd = socketFd(s);
const ops = {
  'net-keepalive': () => { nk.setKeepAliveInterval(s, 5000); nk.setKeepAliveProbes(s, 3); nk.setUserTimeout(s, 45000); },
  'setIntSockopt': () => { setIntSockopt(fd, 6, 5, 5); setIntSockopt(fd, 6, 6, 3); setIntSockopt(fd, 6, 18, 45000); },
};
const f = ops[process.argv[2]];
const native = () => { globalThis.gc(); trim([0]); return (process.memoryUsage().rss >> 10) - (v8.getHeapStatistics().total_physical_size >> 10); };
for (let i = 0; i < 3000; i++) f();
const pts = [native()];
for (let k = 0; k < 3; k++) { for (let i = 0; i < 10000; i++) f(); pts.push(native()); }
console.log(`${process.argv[2]} x3 per connection: native KiB after 0/10k/20k/30k connections' worth: ${pts.join(' ')} -> ${(((pts[3] - pts[0]) * 1024) / 30000).toFixed(0)} B per connection`);
process.exit(0);
