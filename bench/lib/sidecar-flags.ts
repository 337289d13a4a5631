/**
 * The node flags every bench run of the sidecar gets: the ones production uses (image/entrypoint.sh from a
 * 256 Mi limit up, bin.js's shebang, `npm start`). A 16 MiB semi-space cap; Node versions differ in their
 * default (Node 20 on this box: 16 MiB, grown to under load from 1 MiB).
 */
export const SIDECAR_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=16'];
