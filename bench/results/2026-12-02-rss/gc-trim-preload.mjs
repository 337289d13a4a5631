import { createRequire } from 'node:module';
import v8 from 'node:v8';
const ffi = createRequire(import.meta.url)('ffi-rs');
ffi.open({ library: 'trimlibc', path: '' });
const f = ffi.define({ malloc_trim: { library: 'trimlibc', retType: ffi.DataType.I32, paramsType: [ffi.DataType.U64] } });
process.on('SIGUSR2', () => { globalThis.gc?.(); const h = v8.getHeapStatistics(); const m = process.memoryUsage(); process.stderr.write(`HEAP used ${h.used_heap_size >> 10} physical ${h.total_physical_size >> 10} external ${m.external >> 10} arrayBuffers ${m.arrayBuffers >> 10} malloced ${h.malloced_memory >> 10}\n`); setTimeout(() => f.malloc_trim([0]), 1000); });
