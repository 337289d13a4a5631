#!/usr/bin/env node
/**
 * Bundles the compiled CLI (dist/src/cli/bin.js, as tsc wrote it) and its CommonJS dependencies into
 * dist/bundle/: one file for what every command loads, plus one chunk per lazily imported part (the HTTP/1
 * and h2 paths, inject, doctor, demo). `npm start`, the package's bin and the image run dist/bundle/bin.js;
 * the tests import dist/src/** as before (and test/integration/bundle.test.ts runs the bundle itself).
 *
 * Why (issue 12, bench/idle-rss.ts): resolving ~55 ESM files and ~70 CommonJS files through node_modules at
 * startup runs node's path functions (normalizeString, getPathFromURLPosix) hot enough that V8 optimises them
 * with TurboFan, which faults ~3.6 MiB of the optimising compiler's code pages of the node binary into an
 * otherwise idle process. From one file nothing gets that hot, and the module records go too.
 *
 * Left outside, loaded from node_modules at run time: ffi-rs (a native addon), undici and yaml (each loaded only
 * by the commands or routes that need them; undici by its Client module, see src/pool/undici-client.ts).
 *
 *   node scripts/bundle.mjs        (run by `npm run build` after tsc)
 */
import { build } from 'esbuild';
import { readFile, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const EXTERNAL = ['ffi-rs', 'undici', 'yaml'];

/**
 * Our modules load CommonJS packages with `createRequire(import.meta.url)(...)` (plain ESM has no `require`).
 * esbuild only bundles calls of the free `require`, so those become plain `require(...)` here; the banner
 * gives every output file a real `require` for the externals and node builtins.
 */
const plainRequire = {
  name: 'plain-require',
  setup(b) {
    b.onLoad({ filter: /[\\/]dist[\\/]src[\\/].*\.js$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      const contents = text
        .replace(/^const require = createRequire\(import\.meta\.url\);$/m, '')
        .replaceAll('createRequire(import.meta.url)(', 'require(');
      return { contents, loader: 'js' };
    });
  },
};

// Chunk names carry content hashes: start empty so no stale chunk is left behind.
await rm(new URL('../dist/bundle', import.meta.url), { recursive: true, force: true });

const result = await build({
  absWorkingDir: root,
  entryPoints: ['dist/src/cli/bin.js'],
  outdir: 'dist/bundle',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: EXTERNAL,
  // dist/bundle/ is two levels below the package root, as dist/src/version.js is: its '../../package.json' holds.
  banner: { js: "import { createRequire as __bundleCreateRequire } from 'node:module';\nconst require = __bundleCreateRequire(import.meta.url);" },
  plugins: [plainRequire],
  // Whitespace and syntax minified, names kept (stack traces still name every function; the linked source maps
  // give files and lines): the module sources V8 keeps on the heap shrink by a third, ~0.7-1 MiB of idle RSS.
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
  logLevel: 'warning',
  metafile: true,
});

// Fail loudly if a dependency we mean to bundle was left as a run-time require (a computed path, say).
const bundled = new Set(Object.keys(result.metafile.inputs).filter((p) => p.includes('node_modules/')).map((p) => p.split('node_modules/').pop().split('/')[0]));
for (const dep of ['pino', 'prom-client', 'convict']) {
  if (!bundled.has(dep)) throw new Error(`bundle: ${dep} is not in the bundle`);
}
