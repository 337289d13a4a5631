#!/usr/bin/env node
import { cliMain } from './main.js';

const code = await cliMain(process.argv.slice(2), {
  env: process.env,
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
});
process.exitCode = code;
// Upstream sockets and timers are closed by now; exit explicitly so a stray handle cannot keep us alive.
setImmediate(() => process.exit(code)).unref();
