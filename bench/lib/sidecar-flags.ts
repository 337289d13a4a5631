/**
 * The node flags every bench run of the sidecar gets: the ones `npm start` and bin.js use on this box (none).
 * The image's entrypoint sets `--max-semi-space-size=16` (its Node version and cgroup limit differ); on Node 20
 * 16 MiB is V8's own default, and the explicit flag costs ~0.6 MiB of idle RSS here (2026-12-02), so `npm start`
 * and the shebang leave it out. A/B another value with BENCH_SIDECAR_NODE_ARGS.
 */
export const SIDECAR_NODE_FLAGS: readonly string[] = [];
