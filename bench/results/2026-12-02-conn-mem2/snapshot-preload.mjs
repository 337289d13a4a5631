import v8 from 'node:v8';
process.on('SIGUSR2', () => { globalThis.gc?.(); globalThis.gc?.(); const p = v8.writeHeapSnapshot(process.env.SNAP_OUT); process.stderr.write(`SNAP ${p}\n`); });
